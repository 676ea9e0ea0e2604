//! The all-in-one's pipeline stages (validation, CAA, signing, CT, the
//! sweeper, the CRL updater) run on a tokio runtime of their own, whose
//! threads have a higher nice value than the api's.
//!
//! Asynchronous finalization promises that finalize answers at once,
//! whatever CAA and CT are doing. With every task on one runtime, a burst
//! of finalizes waited for two cores busy signing and verifying SCTs for
//! the previous burst (`bench/scenario3.sh`, BENCHMARKS.md). Here the
//! kernel runs the api's threads first and gives the stages what is left;
//! a stage's work is never urgent to a client that is told to poll.
//!
//! The distributed deployment needs nothing like it: each stage is its own
//! process, which an operator places (or renices) as they like.

use std::io;
use tokio::runtime::{Builder, Handle, Runtime};

/// How far above the api's nice value `kiln` puts its pipeline threads
/// unless told otherwise (`--pipeline-niceness`). On Linux's fair
/// scheduler, 10 steps of nice weigh a tenth: when both want the cores,
/// the api gets ~90 % of them; when the api is idle, the stages get all.
pub const DEFAULT_PIPELINE_NICENESS: i32 = 10;

/// Owns the pipeline's runtime; dropping it stops the stages without
/// waiting (their work is in the database, and the sweeper re-drives it).
pub(crate) struct PipelineRuntime {
    runtime: Option<Runtime>,
}

impl PipelineRuntime {
    /// A multi-threaded runtime with a thread per core, each of its threads
    /// (workers and the blocking pool alike) `niceness` above the caller's.
    pub(crate) fn start(niceness: i32) -> io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let target = this_threads_niceness()?.saturating_add(niceness).min(19);
        let runtime = Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("kiln-pipeline")
            .enable_all()
            .on_thread_start(move || set_this_threads_niceness(target))
            .build()?;
        Ok(PipelineRuntime {
            runtime: Some(runtime),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is only taken on drop")
            .handle()
    }
}

impl Drop for PipelineRuntime {
    fn drop(&mut self) {
        // A plain drop blocks, which tokio forbids inside the api's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the kernel reports for the calling thread: on Linux, `getpriority`
/// and `setpriority(PRIO_PROCESS, tid, …)` read and set one thread's nice
/// value, not the whole process's.
fn this_threads_niceness() -> io::Result<i32> {
    Ok(rustix::process::getpriority_process(Some(
        rustix::thread::gettid(),
    ))?)
}

/// Raising a nice value needs no privilege; if it fails anyway the stages
/// run at the api's priority, as before: slower to answer, not wrong.
fn set_this_threads_niceness(niceness: i32) {
    let this_thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(this_thread), niceness) {
        tracing::warn!(error = %e, niceness, "could not lower a pipeline thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipelines_threads_run_at_the_niceness_asked_for_and_others_do_not() {
        let before = this_threads_niceness().unwrap();
        let pipeline = PipelineRuntime::start(7).unwrap();
        let (worker, blocking) = pipeline.handle().block_on(async {
            let worker = tokio::spawn(async { this_threads_niceness() });
            let blocking = tokio::task::spawn_blocking(this_threads_niceness);
            (worker.await.unwrap(), blocking.await.unwrap())
        });
        let expected = (before + 7).min(19);
        assert_eq!((worker.unwrap(), blocking.unwrap()), (expected, expected));
        assert_eq!(
            this_threads_niceness().unwrap(),
            before,
            "the caller's is untouched"
        );
    }
}
