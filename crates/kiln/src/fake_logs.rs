//! The all-in-one's fake CT logs: on loopback, one operator each, with
//! keys kept in the data directory so SCTs stay verifiable across restarts.

use crate::write_private;
use ct_submitter::CtLog;
use fake_ct_log::{FakeLog, FakeLogConfig};
use openssl::pkey::PKey;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A CT log Kiln submits to, with the fake that serves it.
pub struct RunningLog {
    pub log: CtLog,
    pub fake: Arc<FakeLog>,
}

/// Fake CT logs on loopback, one operator each; keys persist in the data
/// directory so SCTs stay verifiable across restarts.
/// They run on the pipeline's runtime: they stand in for servers
/// elsewhere, whose work must not delay the api either.
pub(crate) fn start(
    dir: &Path,
    count: usize,
    shutdown: &CancellationToken,
    (tasks, on_pipeline): (&mut JoinSet<()>, &Handle),
) -> anyhow::Result<Vec<RunningLog>> {
    let key_dir = dir.join("ct-logs");
    std::fs::create_dir_all(&key_dir)?;
    let mut logs = Vec::new();
    for i in 0..count {
        let key_path = key_dir.join(format!("log-{i}.key.pem"));
        let key = match std::fs::read(&key_path) {
            Ok(pem) => PKey::private_key_from_pem(&pem)?,
            Err(_) => {
                let key = FakeLogConfig::generate()?.key;
                write_private(&key_path, &key.private_key_to_pem_pkcs8()?)?;
                key
            }
        };
        let fake = Arc::new(FakeLog::new(FakeLogConfig::new(key))?);
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = shutdown.clone();
        let served = fake.clone();
        let serve = async move {
            let stopped = async move { stop.cancelled().await };
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => fake_ct_log::serve(listener, served, stopped).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "fake CT log stopped");
            }
        };
        tasks.spawn_on(serve, on_pipeline);
        logs.push(RunningLog {
            log: CtLog::new(
                format!("kiln-fake-log-{i}"),
                url,
                fake.public_key_der().to_vec(),
                format!("Fake Operator {i}"),
            ),
            fake,
        });
    }
    Ok(logs)
}
