//! `kiln report compat`: per client family, how the clients that got
//! `processing` fared (polled, downloaded, gave up).

use crate::cli::DatabaseArgs;

/// Prints the compatibility report, as a table or as JSON.
pub async fn compat(db: &DatabaseArgs, json: bool, abandon_after_secs: u64) -> anyhow::Result<()> {
    let store = db.open().await?;
    let observations = store.finalize_observations(0).await?;
    let rows = api::compat::report(
        &observations,
        store::now_ms(),
        abandon_after_secs as i64 * 1000,
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", api::compat::render_table(&rows));
    }
    Ok(())
}
