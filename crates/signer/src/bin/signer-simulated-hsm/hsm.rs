//! The simulated HSM: a handler wrapper that holds the replica's one
//! session for a fixed latency before every signing job.

use signer::Signer;
use std::time::Duration;

/// One HSM session per replica, each signing job holding it for `latency`.
pub(crate) struct SimulatedHsm {
    pub(crate) inner: Signer,
    pub(crate) latency: Duration,
    pub(crate) session: tokio::sync::Mutex<()>,
}

#[async_trait::async_trait]
impl queue::Handler for SimulatedHsm {
    fn stage(&self) -> &'static str {
        self.inner.stage()
    }
    async fn handle(
        &self,
        job: &proto::Job,
        attempt: u32,
    ) -> Result<Vec<proto::Job>, queue::StageError> {
        {
            let _session = self.session.lock().await;
            tokio::time::sleep(self.latency).await;
        }
        self.inner.handle(job, attempt).await
    }
    async fn give_up(&self, job: &proto::Job, reason: &str) {
        self.inner.give_up(job, reason).await
    }
}
