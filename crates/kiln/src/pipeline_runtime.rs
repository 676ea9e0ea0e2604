//! Where the all-in-one runs its pipeline stages: on threads of their own
//! (`--pipeline-threads N`), or on the api's runtime (0).
//!
//! Finalization is asynchronous so that a finalize answers at once whatever
//! CAA and CT are doing. On one runtime the stages' tasks (signing, SCT
//! verification) queue on the same worker threads as the requests; on a
//! runtime of their own they are threads the kernel schedules beside the
//! api's, so a burst of finalizes is not served behind the previous burst's
//! pipeline (BENCHMARKS.md, scenario 3).

use tokio::runtime::{Builder, Handle, Runtime};

pub struct PipelineRuntime {
    /// `None`: the stages share the caller's runtime.
    own: Option<Runtime>,
}

impl PipelineRuntime {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let own = match threads {
            0 => None,
            n => Some(
                Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("kiln-pipeline")
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(PipelineRuntime { own })
    }

    /// The runtime the stages are spawned on.
    pub fn handle(&self) -> Handle {
        match &self.own {
            Some(runtime) => runtime.handle().clone(),
            None => Handle::current(),
        }
    }
}

impl Drop for PipelineRuntime {
    /// A runtime may not be dropped (blocking) from async code, where Kiln
    /// is stopped; its tasks have finished by then (`Kiln::shutdown`), or
    /// are abandoned as a dropped JoinSet's would be.
    fn drop(&mut self) {
        if let Some(runtime) = self.own.take() {
            runtime.shutdown_background();
        }
    }
}
