//! `kiln order show`: one order's state and finalization timeline.

use crate::cli::DatabaseArgs;
use anyhow::Context;

/// Prints [`crate::order_report`] of order `id`.
pub async fn show(db: &DatabaseArgs, id: &str) -> anyhow::Result<()> {
    let store = db.open().await?;
    let order = store
        .order(id)
        .await?
        .with_context(|| format!("no order {id}"))?;
    print!(
        "{}",
        crate::order_report(&order, &store.certificates_for_order(id).await?)
    );
    Ok(())
}
