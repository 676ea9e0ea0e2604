//! What makes a run leave nothing behind: the scratch directory (every
//! scenario's Kiln data — the CA's private keys among it — and the
//! client's state), removed when dropped, whichever way the run ends; and
//! the signals (Ctrl-C, SIGTERM) watched from the run's start to its end,
//! so that one arriving at any moment — between scenarios too — stops the
//! run instead of being swallowed.

use anyhow::Context;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

/// A signal stopped the run; the command exits with `exit_code`
/// (128 + the signal's number, as a shell reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    pub signal: &'static str,
    pub exit_code: i32,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted ({}): the client and Kiln were stopped and the scratch directory removed",
            self.signal
        )
    }
}

impl std::error::Error for Interrupted {}

/// A temporary directory, private to this user, removed on drop unless
/// kept.
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// Creates `kiln-conformance-{label}` under the temporary directory
    /// (`TMPDIR`), mode 0700: it will hold private keys.
    pub fn create(label: &str, keep: bool) -> anyhow::Result<ScratchDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("kiln-conformance-{label}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path, keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// SIGINT and SIGTERM, caught from `watch` on until dropped.
pub struct Signals {
    received: watch::Receiver<Option<Interrupted>>,
    task: tokio::task::JoinHandle<()>,
}

impl Signals {
    /// Installs the handlers now (not when first awaited), so no signal
    /// falls between two scenarios unseen.
    pub fn watch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        let (tx, received) = watch::channel(None);
        let task = tokio::spawn(async move {
            let got = tokio::select! {
                _ = int.recv() => Interrupted { signal: "SIGINT", exit_code: 130 },
                _ = term.recv() => Interrupted { signal: "SIGTERM", exit_code: 143 },
            };
            let _ = tx.send(Some(got));
        });
        Ok(Signals { received, task })
    }

    /// The signal received so far, if any.
    pub fn received(&self) -> Option<Interrupted> {
        *self.received.borrow()
    }

    /// Waits for a signal.
    pub async fn wait(&self) -> Interrupted {
        let mut received = self.received.clone();
        match received.wait_for(Option::is_some).await {
            Ok(got) => got.expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_directory_goes_unless_kept() {
        let label = format!("test-{}", std::process::id());
        let scratch = ScratchDir::create(&label, false).unwrap();
        let path = scratch.path().to_path_buf();
        std::fs::create_dir_all(path.join("baseline/kiln/ca")).unwrap();
        std::fs::write(path.join("baseline/kiln/ca/root.key.pem"), "secret").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "private: it holds keys");
        assert!(
            ScratchDir::create(&label, false).is_err(),
            "never an existing directory"
        );
        // Dropped on an error path as on any other.
        let failing = || -> anyhow::Result<()> {
            let _held = scratch;
            anyhow::bail!("a scenario failed")
        };
        assert!(failing().is_err());
        assert!(!path.exists(), "removed on drop");
        let kept = ScratchDir::create(&label, true).unwrap();
        drop(kept);
        assert!(path.exists(), "--keep");
        std::fs::remove_dir_all(&path).unwrap();
    }
}
