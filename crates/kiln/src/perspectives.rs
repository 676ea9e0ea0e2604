//! The all-in-one's remote perspectives (MPIC, BR 3.2.2.9): one in-process
//! validator per `--perspective NAME[@REGION]=DNS_ADDR`, each resolving
//! through its own DNS server and consuming its own queue, so that a test
//! can give one perspective another view of the world and watch the quorum
//! decide. All live on one machine: the region rule applies only when
//! every perspective was given a region.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dns::{Dns, DnsMode};
use mpic::quorum::Enforcement;
use mpic::{Corroboration, RemotePerspective};
use queue::Queue;
use validator::Validator;

/// One `--perspective` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerspectiveSpec {
    pub perspective: RemotePerspective,
    pub dns_server: SocketAddr,
}

impl std::str::FromStr for PerspectiveSpec {
    type Err = String;
    /// `NAME[@REGION]=DNS_ADDR`, e.g. `arin-1@ARIN=127.0.0.1:8054`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (who, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected NAME[@REGION]=DNS_ADDR"))?;
        Ok(PerspectiveSpec {
            perspective: who.parse()?,
            dns_server: addr
                .parse()
                .map_err(|e| format!("{s:?}: DNS server address {addr:?}: {e}"))?,
        })
    }
}

/// How the all-in-one corroborates.
#[derive(Clone, Debug, Default)]
pub struct MpicSettings {
    pub perspectives: Vec<PerspectiveSpec>,
    /// `None`: [`mpic::DEFAULT_DEADLINE`].
    pub deadline: Option<Duration>,
    pub enforcement: Enforcement,
}

impl MpicSettings {
    /// The primary's corroboration; `None` without perspectives.
    pub fn corroboration(&self, queue: &Arc<dyn Queue>) -> Option<Corroboration> {
        if self.perspectives.is_empty() {
            return None;
        }
        let remotes: Vec<RemotePerspective> = self
            .perspectives
            .iter()
            .map(|p| p.perspective.clone())
            .collect();
        Some(Corroboration::new(
            remotes,
            self.deadline.unwrap_or(mpic::DEFAULT_DEADLINE),
            self.enforcement,
            queue.clone(),
        ))
    }

    /// One validator per perspective, like `primary` but with its own
    /// resolver and no remotes of its own, with the queue it consumes.
    pub fn remote_validators(
        &self,
        primary: &Validator,
    ) -> anyhow::Result<Vec<(&'static str, Validator)>> {
        let mut names: Vec<&str> = self
            .perspectives
            .iter()
            .map(|p| p.perspective.name.as_str())
            .collect();
        names.sort();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            anyhow::bail!("--perspective {} is given twice", twice[0]);
        }
        self.perspectives
            .iter()
            .map(|spec| {
                let remote = Validator {
                    store: primary.store.clone(),
                    dns: Dns::new(DnsMode::Server(spec.dns_server))?,
                    ports: primary.ports,
                    addresses: primary.addresses.clone(),
                    caa_policy: primary.caa_policy.clone(),
                    account_url_prefix: primary.account_url_prefix.clone(),
                    corroboration: None,
                    perspective: Some(spec.perspective.clone()),
                };
                // One name per perspective for the life of the process.
                let queue: &'static str = proto::queues::perspective(&spec.perspective.name).leak();
                Ok((queue, remote))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpic::quorum::Region;

    #[test]
    fn flags_parse() {
        let spec: PerspectiveSpec = "east@ARIN=127.0.0.1:8054".parse().unwrap();
        assert_eq!(spec.perspective.name, "east");
        assert_eq!(spec.perspective.region, Some(Region::Arin));
        assert_eq!(spec.dns_server.port(), 8054);
        assert!("east=localhost".parse::<PerspectiveSpec>().is_err());
        assert!("east".parse::<PerspectiveSpec>().is_err());
    }
}
