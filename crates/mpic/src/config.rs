//! The `mpic` table of a primary's config (the validator's, the
//! caa-checker's): the same remotes in both, since every check of a name is
//! corroborated by the same perspectives.

use crate::corroboration::{Corroboration, DEFAULT_DEADLINE, RemotePerspective};
use crate::quorum::Enforcement;
use queue::Queue;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// `[validator.mpic]` and `[caa-checker.mpic]`: the remote perspectives a
/// primary asks, and how their quorum counts.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MpicConfig {
    /// Every remote perspective, `NAME@REGION` each (the region rule needs
    /// regions; `NAME` alone only in a test deployment).
    #[serde(default)]
    pub remotes: Vec<String>,
    /// How long the remotes have to answer; default 10.
    #[serde(default)]
    pub deadline_secs: Option<u64>,
    /// Log and count a failed quorum, never refuse: a staged rollout.
    #[serde(default)]
    pub observe_only: bool,
    /// A test deployment may run fewer remotes than the BRs require today
    /// (none at all, or one machine's worth without regions); a production
    /// validator refuses to start so.
    #[serde(default)]
    pub test_deployment: bool,
}

impl MpicConfig {
    /// The remotes, checked against the BRs' minimum at `now_secs` unless
    /// this is a test deployment.
    pub fn remotes(&self, now_secs: i64) -> Result<Vec<RemotePerspective>, String> {
        let remotes: Vec<RemotePerspective> = self
            .remotes
            .iter()
            .map(|r| r.parse())
            .collect::<Result<_, String>>()
            .map_err(|e| format!("[mpic] remotes: {e}"))?;
        if self.test_deployment {
            return Ok(remotes);
        }
        let required = crate::quorum::required_remotes(now_secs);
        if remotes.len() < required {
            return Err(format!(
                "[mpic] lists {} remote perspectives; the Baseline Requirements \
                 (3.2.2.9) require {required} today. Set test_deployment = true for a test \
                 deployment",
                remotes.len()
            ));
        }
        if let Some(r) = remotes.iter().find(|r| r.region.is_none()) {
            return Err(format!(
                "[mpic] remote {:?} has no region (NAME@REGION): the Baseline \
                 Requirements need corroboration from 2 regions",
                r.name
            ));
        }
        Ok(remotes)
    }

    /// The primary's corroboration by `remotes`, what [`MpicConfig::remotes`]
    /// returned (parsed and checked once, at start-up); `None` without any.
    pub fn corroboration(
        &self,
        remotes: Vec<RemotePerspective>,
        queue: &Arc<dyn Queue>,
    ) -> Option<Corroboration> {
        if remotes.is_empty() {
            return None;
        }
        let enforcement = match self.observe_only {
            true => Enforcement::ObserveOnly,
            false => Enforcement::Enforce,
        };
        let deadline = self
            .deadline_secs
            .map_or(DEFAULT_DEADLINE, Duration::from_secs);
        Some(Corroboration::new(
            remotes,
            deadline,
            enforcement,
            queue.clone(),
        ))
    }
}
