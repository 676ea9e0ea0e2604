//! `kiln migrate`: applies the database migrations, then exits. A
//! distributed deployment runs it before the stages start (they never
//! migrate).

use anyhow::Context;
use std::path::PathBuf;

/// Migrates the database at `database_url`, or at the URL in
/// `database_url_file` (it carries a password).
pub async fn migrate(
    database_url: Option<String>,
    database_url_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let database_url = match (database_url, database_url_file) {
        (Some(url), _) => url,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => anyhow::bail!("--database-url or --database-url-file is required"),
    };
    let store = store::Store::connect(&database_url)
        .await
        .context("connecting")?;
    store.migrate().await.context("migrating")?;
    println!("migrations applied");
    Ok(())
}
