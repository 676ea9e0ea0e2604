//! A fresh all-in-one Kiln per scenario: its own data directory and
//! loopback ports, the scenario's knobs, and the management API through
//! which its request log is read; restarted on the same directory and
//! ports when the scenario asks; and, at the end, Kiln's own records of
//! what the client did.

use super::scenarios::Setup;
use crate::knobs::{Knobs, SeenRequest};
use crate::{EmbeddedConfig, Kiln};
use anyhow::Context;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long Kiln stays down in `restart`.
pub const RESTART_DOWNTIME: Duration = Duration::from_secs(2);

/// What Kiln recorded while the client ran.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// Every request the api received, oldest first.
    pub requests: Vec<SeenRequest>,
    /// Every order, oldest first.
    pub orders: Vec<store::Order>,
    /// The compat observations: finalizes answered `processing`.
    pub observations: Vec<store::FinalizeObservation>,
    /// When Kiln was down, if it was restarted (unix ms).
    pub downtime: Option<(i64, i64)>,
}

/// A port that was free a moment ago (for the client's own listeners and
/// the management API, which must be named before they bind).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

pub struct ScenarioKiln {
    kiln: Option<Kiln>,
    config: EmbeddedConfig,
    http: reqwest::Client,
    /// Requests logged by an instance that has since stopped.
    earlier_requests: Vec<SeenRequest>,
    downtime: Option<(i64, i64)>,
}

impl ScenarioKiln {
    /// Starts Kiln in `data_dir` for `setup`; http-01 and tls-alpn-01
    /// validation connect to the given ports (the client's).
    pub async fn start(
        setup: &Setup,
        data_dir: &Path,
        http01_port: u16,
        tlsalpn01_port: u16,
    ) -> anyhow::Result<ScenarioKiln> {
        let mut config = EmbeddedConfig::new(data_dir);
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        config.http01_port = http01_port;
        config.tlsalpn01_port = tlsalpn01_port;
        config.knobs = Some(setup.knobs.clone());
        config.finalize_timeout = setup.finalize_timeout;
        config.step_timeout = setup.step_timeout;
        config.alternate_chain = setup.alternate_chain;
        if setup.sync_finalize {
            config.finalize =
                api::PolicyHandle::new(api::FinalizePolicy::fixed(api::FinalizeMode::Sync));
        }
        let mut attempt = 0;
        let kiln = loop {
            // The management API's port is picked before Kiln binds it:
            // another process may take it meanwhile, so try again.
            config.mgmt_listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)));
            match Kiln::start(config.clone()).await {
                Ok(kiln) => break kiln,
                Err(e) if attempt < 3 && format!("{e:#}").contains("ddress") => attempt += 1,
                Err(e) => return Err(e.context("starting Kiln for the scenario")),
            }
        };
        // From now on the same ports, across a restart.
        config.listen = listen_addr(&kiln)?;
        Ok(ScenarioKiln {
            kiln: Some(kiln),
            config,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()?,
            earlier_requests: Vec::new(),
            downtime: None,
        })
    }

    fn kiln(&self) -> &Kiln {
        self.kiln.as_ref().expect("Kiln is running")
    }

    pub fn directory_url(&self) -> String {
        self.kiln().directory_url.clone()
    }

    pub fn root_pem_path(&self) -> PathBuf {
        self.kiln().root_pem_path.clone()
    }

    /// The requests logged so far, across restarts.
    pub async fn requests(&self) -> anyhow::Result<Vec<SeenRequest>> {
        let mut all = self.earlier_requests.clone();
        if self.kiln.is_some() {
            all.extend(self.live_requests().await?);
        }
        Ok(all)
    }

    async fn live_requests(&self) -> anyhow::Result<Vec<SeenRequest>> {
        #[derive(serde::Deserialize)]
        struct Log {
            requests: Vec<SeenRequest>,
        }
        let mgmt = self.config.mgmt_listen.context("no management API")?;
        let log: Log = self
            .http
            .get(format!("http://{mgmt}/requests"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("reading Kiln's request log")?
            .json()
            .await
            .context("Kiln's request log")?;
        Ok(log.requests)
    }

    /// Stops Kiln, waits `downtime`, and starts it again on the same data
    /// directory and ports with `knobs`.
    pub async fn restart(&mut self, knobs: Knobs, downtime: Duration) -> anyhow::Result<()> {
        let requests = self.live_requests().await?;
        self.earlier_requests.extend(requests);
        let kiln = self.kiln.take().context("Kiln is not running")?;
        kiln.shutdown().await;
        let down = store::now_ms();
        tokio::time::sleep(downtime).await;
        self.config.knobs = Some(knobs);
        let mut attempt = 0;
        let kiln = loop {
            match Kiln::start(self.config.clone()).await {
                Ok(kiln) => break kiln,
                // The old sockets may linger a moment.
                Err(_) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e.context("restarting Kiln")),
            }
        };
        self.downtime = Some((down, store::now_ms()));
        self.kiln = Some(kiln);
        Ok(())
    }

    /// Kiln's records of the run.
    pub async fn records(&self) -> anyhow::Result<Records> {
        let store = &self.kiln.as_ref().context("Kiln is not running")?.store;
        let mut orders = Vec::new();
        for row in store.audit_orders_page("", i64::MIN, 1000).await? {
            if let Some(order) = store.order(&row.id).await? {
                orders.push(order);
            }
        }
        orders.sort_by_key(|o| o.created_at);
        Ok(Records {
            requests: self.requests().await?,
            orders,
            observations: store.finalize_observations(0).await?,
            downtime: self.downtime,
        })
    }

    pub async fn shutdown(mut self) {
        if let Some(kiln) = self.kiln.take() {
            kiln.shutdown().await;
        }
    }
}

fn listen_addr(kiln: &Kiln) -> anyhow::Result<SocketAddr> {
    let authority = kiln
        .base_url
        .strip_prefix("https://")
        .context("Kiln's base URL is https")?;
    authority
        .parse()
        .with_context(|| format!("Kiln's address {authority}"))
}
