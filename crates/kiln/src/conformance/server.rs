//! A fresh all-in-one Kiln per scenario: its own data directory and
//! loopback ports, the scenario's knobs, and the management API through
//! which its request log is read; restarted on the same directory and
//! ports when the scenario asks; and, at the end, Kiln's own records of
//! what the client did.

use super::scenarios::Setup;
use crate::knobs::{Knobs, RequestLog, SeenRequest};
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
    /// Requests that Kiln's log (it keeps the latest
    /// [`crate::knobs::MAX_SEEN_REQUESTS`]) dropped: `requests` lacks them.
    pub requests_dropped: u64,
    /// The challenges of the orders' authorizations.
    pub challenges: Vec<store::Challenge>,
}

impl Records {
    /// What had happened by `ms`: requests up to it, orders created by
    /// it (as they are now).
    pub fn until(&self, ms: i64) -> Records {
        Records {
            requests: self
                .requests
                .iter()
                .filter(|r| r.at_ms <= ms)
                .cloned()
                .collect(),
            orders: self
                .orders
                .iter()
                .filter(|o| o.created_at <= ms)
                .cloned()
                .collect(),
            ..self.clone()
        }
    }
}

/// Loopback ports held open (bound) until released, so that they are
/// distinct from each other and from every port bound meanwhile — Kiln's
/// own, whose port 0 the kernel could otherwise hand out again: the
/// client's http-01 and tls-alpn-01 listeners, which the client binds, and
/// the management API's, which must be named before Kiln binds it.
pub struct Ports {
    pub http01: u16,
    pub tlsalpn01: u16,
    held: Vec<std::net::TcpListener>,
}

fn bind_any() -> anyhow::Result<(u16, std::net::TcpListener)> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("reserving a loopback port")?;
    Ok((listener.local_addr()?.port(), listener))
}

impl Ports {
    /// Binds both of the client's ports at once.
    pub fn reserve() -> anyhow::Result<Ports> {
        let (http01, a) = bind_any()?;
        let (tlsalpn01, b) = bind_any()?;
        Ok(Ports {
            http01,
            tlsalpn01,
            held: vec![a, b],
        })
    }

    /// Releases the client's ports, for it to bind (just before it starts).
    pub fn release(&mut self) {
        self.held.clear();
    }
}

pub struct ScenarioKiln {
    kiln: Option<Kiln>,
    config: EmbeddedConfig,
    http: reqwest::Client,
    /// Requests logged by an instance that has since stopped.
    earlier: RequestLog,
    downtime: Option<(i64, i64)>,
}

impl ScenarioKiln {
    /// Starts Kiln in `data_dir` for `setup`; http-01 and tls-alpn-01
    /// validation connect to `ports` (the client's, still held).
    pub async fn start(
        setup: &Setup,
        data_dir: &Path,
        ports: &Ports,
    ) -> anyhow::Result<ScenarioKiln> {
        let mut config = EmbeddedConfig::new(data_dir);
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        config.http01_port = ports.http01;
        config.tlsalpn01_port = ports.tlsalpn01;
        config.knobs = Some(setup.knobs.clone());
        config.finalize_timeout = setup.finalize_timeout;
        config.step_timeout = setup.step_timeout;
        config.alternate_chain = setup.alternate_chain;
        if let Some(types) = &setup.challenge_types {
            config.challenge_types = types.clone();
        }
        if setup.sync_finalize {
            config.finalize =
                api::PolicyHandle::new(api::FinalizePolicy::fixed(api::FinalizeMode::Sync));
        }
        let mut attempt = 0;
        let kiln = loop {
            // The management API's port is named before Kiln binds it: held
            // (while the client's are) until just before, then released;
            // another process may take it meanwhile, so try again.
            let (port, held) = bind_any()?;
            config.mgmt_listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            drop(held);
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
            earlier: RequestLog::default(),
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
    pub async fn requests(&self) -> anyhow::Result<RequestLog> {
        let mut all = self.earlier.clone();
        if self.kiln.is_some() {
            let live = self.live_requests().await?;
            all.requests.extend(live.requests);
            all.dropped += live.dropped;
        }
        Ok(all)
    }

    async fn live_requests(&self) -> anyhow::Result<RequestLog> {
        let mgmt = self.config.mgmt_listen.context("no management API")?;
        let log: RequestLog = self
            .http
            .get(format!("http://{mgmt}/requests"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("reading Kiln's request log")?
            .json()
            .await
            .context("Kiln's request log")?;
        Ok(log)
    }

    /// Stops Kiln, waits `downtime`, and starts it again on the same data
    /// directory and ports with `knobs`.
    pub async fn restart(&mut self, knobs: Knobs, downtime: Duration) -> anyhow::Result<()> {
        let live = self.live_requests().await?;
        self.earlier.requests.extend(live.requests);
        self.earlier.dropped += live.dropped;
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

    fn store(&self) -> anyhow::Result<&store::Store> {
        Ok(&self.kiln.as_ref().context("Kiln is not running")?.store)
    }

    /// Kiln's records of the run.
    pub async fn records(&self) -> anyhow::Result<Records> {
        let store = self.store()?;
        let (mut orders, mut challenges) = (Vec::new(), Vec::new());
        for row in store.audit_orders_page("", i64::MIN, 1000).await? {
            if let Some(order) = store.order(&row.id).await? {
                for authz in store.authzs_for_order(&order.id).await? {
                    challenges.extend(store.challenges_for_authz(&authz.id).await?);
                }
                orders.push(order);
            }
        }
        orders.sort_by_key(|o| o.created_at);
        let log = self.requests().await?;
        Ok(Records {
            requests: log.requests,
            requests_dropped: log.dropped,
            orders,
            observations: store.finalize_observations(0).await?,
            downtime: self.downtime,
            challenges,
        })
    }

    /// Moves the ARI window of every certificate issued so far to the
    /// past (`kiln ari renew-now`); how many were marked.
    pub async fn mark_renew_now(&self) -> anyhow::Result<usize> {
        let store = self.store()?;
        let mut marked = 0;
        for order in self.records().await?.orders {
            if let Some(serial) = &order.certificate_serial {
                store.mark_renew_now(serial, None, store::now_ms()).await?;
                marked += 1;
            }
        }
        Ok(marked)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_and_held_until_released() {
        let mut all = Vec::new();
        let mut reservations = Vec::new();
        for _ in 0..20 {
            let ports = Ports::reserve().unwrap();
            all.extend([ports.http01, ports.tlsalpn01]);
            reservations.push(ports);
        }
        let mut distinct = all.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        let bind = |port: u16| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let mut ports = reservations.pop().unwrap();
        assert!(bind(ports.http01).is_err(), "held");
        assert!(bind(ports.tlsalpn01).is_err(), "held");
        // While held, nothing else (port 0 included) gets them.
        for _ in 0..50 {
            let (other, _held) = bind_any().unwrap();
            assert!(!all.contains(&other), "{other} was handed out twice");
        }
        ports.release();
        assert!(bind(ports.http01).is_ok(), "released for the client");
    }
}
