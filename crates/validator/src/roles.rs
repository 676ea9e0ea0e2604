//! What a `validator` process is, from its config: the primary (consuming
//! `kiln.validator`, asking `[validator.mpic] remotes` to corroborate) or a
//! remote perspective (`[validator] perspective`, consuming its own queue).

use crate::config::ValidatorConfig;
use mpic::RemotePerspective;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Set on a remote perspective.
    pub perspective: Option<RemotePerspective>,
    /// The primary's remotes (none on a remote perspective).
    pub remotes: Vec<RemotePerspective>,
}

impl Roles {
    /// Refuses a primary with fewer remotes than the BRs require at
    /// `now_secs`, unless `[validator.mpic] test_deployment`.
    pub fn of(config: &ValidatorConfig, now_secs: i64) -> anyhow::Result<Roles> {
        let perspective = config
            .perspective
            .as_deref()
            .map(str::parse::<RemotePerspective>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("[validator] perspective: {e}"))?;
        let remotes = match &perspective {
            // A remote asks no one else.
            Some(_) => Vec::new(),
            None => config
                .mpic
                .remotes(now_secs)
                .map_err(|e| anyhow::anyhow!("[validator.mpic]: {e}"))?,
        };
        Ok(Roles {
            perspective,
            remotes,
        })
    }

    /// A primary asking no one: validation is not corroborated (a test
    /// deployment).
    pub fn uncorroborated(&self) -> bool {
        self.perspective.is_none() && self.remotes.is_empty()
    }

    /// The queue this process consumes; a perspective's name is fixed for
    /// the life of the process.
    pub fn consumed_queue(&self) -> &'static str {
        match &self.perspective {
            Some(p) => proto::queues::perspective(&p.name).leak(),
            None => proto::queues::VALIDATOR,
        }
    }

    /// The perspective queues beyond the stage queues: the primary publishes
    /// to its remotes' (declared before a remote may have started), a
    /// remote consumes its own.
    pub fn queues_to_declare(&self) -> Vec<String> {
        self.perspective
            .iter()
            .chain(&self.remotes)
            .map(|p| proto::queues::perspective(&p.name))
            .collect()
    }
}
