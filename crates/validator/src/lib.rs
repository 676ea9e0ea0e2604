//! The `validator` stage: checks a challenge the client declared ready
//! (http-01, dns-01, tls-alpn-01, dns-account-01, dns-persist-01), then CAA
//! at validation time, and records the outcome on the challenge, its
//! authorization and its order.

#![forbid(unsafe_code)]

pub mod address;
pub mod challenge;
pub mod config;
mod connect;
pub mod dns_account;
pub mod dns_persist;
mod http01;
pub mod roles;

use async_trait::async_trait;
use challenge::ChallengePorts;
use dns::Dns;
use dns::caa::{CaaPolicy, CaaRequest};
use domain::{ChallengeStatus, ChallengeType, Identifier, Problem};
use proto::Job;
use queue::{Handler, StageError};
use store::{Authz, Challenge, Store, now_ms};
use tracing::info;

/// Deliveries of one validation while the CAA lookup fails (SERVFAIL,
/// timeout) before the challenge ends `invalid` with `dns`; the runner's
/// backoff spaces them out.
pub const CAA_DNS_ATTEMPTS: u32 = 3;

pub struct Validator {
    pub store: Store,
    pub dns: Dns,
    pub ports: ChallengePorts,
    /// The addresses http-01 and tls-alpn-01 may connect to.
    pub addresses: address::AddressPolicy,
    pub caa_policy: CaaPolicy,
    /// Account URLs are `{account_url_prefix}{id}`, exactly as the api
    /// shows them (CAA `accounturi`, dns-account-01, dns-persist-01).
    pub account_url_prefix: String,
    /// The primary's remote perspectives (MPIC); `None` asks none.
    pub corroboration: Option<mpic::Corroboration>,
    /// Set on a remote perspective, which answers only `Corroborate` jobs
    /// addressed to it.
    pub perspective: Option<mpic::RemotePerspective>,
}

impl Validator {
    /// The challenge and its authorization while it is `processing`;
    /// `None` once decided (a redelivery).
    async fn processing(&self, id: &str) -> Result<Option<(Challenge, Authz)>, StageError> {
        let Some((chal, authz)) = self
            .store
            .challenge_with_authz(id)
            .await
            .map_err(StageError::retry)?
        else {
            return Err(StageError::Permanent(format!(
                "challenge {id} does not exist"
            )));
        };
        // A type a newer build offered is left to that build's validators.
        let ours = chal.kind != ChallengeType::Unknown;
        Ok((chal.status == ChallengeStatus::Processing && ours).then_some((chal, authz)))
    }

    /// The primary check; when it passes and remote perspectives are
    /// configured, their corroboration is asked for instead of deciding.
    async fn validate(&self, job_id: &str, attempt: u32) -> Result<Vec<Job>, StageError> {
        let Some((chal, authz)) = self.processing(job_id).await? else {
            return Ok(vec![]);
        };
        let outcome = self.check(&chal, &authz, Some(attempt)).await?;
        info!(challenge_id = job_id, kind = %chal.kind, identifier = %authz.identifier, ok = outcome.is_ok(), "challenge validated");
        if let (Ok(()), Some(corroboration)) = (&outcome, &self.corroboration) {
            let tally = Job::TallyCorroboration {
                challenge_id: job_id.to_string(),
            };
            let ask = |r: &mpic::RemotePerspective| Job::Corroborate {
                challenge_id: job_id.to_string(),
                perspective: r.name.clone(),
            };
            return corroboration.fan_out(&self.store, job_id, tally, ask).await;
        }
        self.finish(job_id, &outcome).await?;
        Ok(vec![])
    }

    /// A remote perspective's repeat of the check, recorded for the tally.
    async fn corroborate(&self, job_id: &str, asked: &str) -> Result<Vec<Job>, StageError> {
        let Some(me) = self.perspective.as_ref().filter(|p| p.name == asked) else {
            return Err(StageError::Permanent(format!(
                "corroboration for perspective {asked} reached another validator"
            )));
        };
        let Some((chal, authz)) = self.processing(job_id).await? else {
            return Ok(vec![]);
        };
        // A lookup failure here is this perspective's finding, not retried.
        let outcome = self.check(&chal, &authz, None).await?;
        info!(challenge_id = job_id, perspective = %me.name, corroborated = outcome.is_ok(), "perspective checked");
        let record = mpic::corroboration::record_of(&me.name, me.region, &outcome);
        self.store
            .record_perspective_result(job_id, &record)
            .await
            .map_err(StageError::retry)?;
        Ok(vec![Job::TallyCorroboration {
            challenge_id: job_id.to_string(),
        }])
    }

    /// A remote perspective's repeat of the caa-checker's recheck at
    /// finalize, recorded for its tally.
    async fn corroborate_caa(
        &self,
        order_id: &str,
        asked: &str,
        account_id: &str,
        names: &[proto::CaaName],
    ) -> Result<Vec<Job>, StageError> {
        let Some(me) = self.perspective.as_ref().filter(|p| p.name == asked) else {
            return Err(StageError::Permanent(format!(
                "CAA corroboration for perspective {asked} reached another validator"
            )));
        };
        let account_uri = format!("{}{account_id}", self.account_url_prefix);
        let requests = mpic::caa_requests(names, &account_uri);
        let outcome = dns::caa::check_all(&self.dns, &requests, &self.caa_policy).await;
        info!(order_id, perspective = %me.name, corroborated = outcome.is_ok(), "perspective rechecked CAA");
        let record = mpic::corroboration::record_of(&me.name, me.region, &outcome);
        self.store
            .record_perspective_result(&store::caa_recheck_subject(order_id), &record)
            .await
            .map_err(StageError::retry)?;
        Ok(vec![Job::TallyCaa {
            order_id: order_id.to_string(),
        }])
    }

    /// Decides a corroboration once it can be (every remote answered, or
    /// the deadline passed).
    async fn tally(&self, job_id: &str) -> Result<Vec<Job>, StageError> {
        let Some(corroboration) = &self.corroboration else {
            return Ok(vec![]);
        };
        let Some((_, authz)) = self.processing(job_id).await? else {
            return Ok(vec![]);
        };
        let identifier = Identifier::from_authz_value(&authz.identifier);
        if let Some(outcome) = corroboration
            .tally(&self.store, job_id, Some(&identifier))
            .await?
        {
            self.finish(job_id, &outcome).await?;
        }
        Ok(vec![])
    }

    async fn finish(&self, job_id: &str, outcome: &Result<(), Problem>) -> Result<(), StageError> {
        self.store
            .finish_challenge(job_id, outcome.as_ref().map(|_| ()), now_ms())
            .await
            .map_err(StageError::retry)?;
        Ok(())
    }

    /// The challenge's method from this validator's vantage point, then
    /// CAA. `attempt` is the delivery's on the primary, whose failed CAA
    /// lookups are retried; `None` on a remote perspective.
    async fn check(
        &self,
        chal: &Challenge,
        authz: &Authz,
        attempt: Option<u32>,
    ) -> Result<Result<(), Problem>, StageError> {
        let account = self
            .store
            .account(&authz.account_id)
            .await
            .map_err(StageError::retry)?
            .ok_or_else(|| StageError::Permanent("authorization without account".into()))?;
        let key_authorization = domain::key_authorization(&chal.token, &account.key_thumbprint);
        // As the api wrote it in `Location`: CAA `accounturi`, and the
        // account that dns-account-01 and dns-persist-01 records name.
        let account_uri = format!("{}{}", self.account_url_prefix, account.id);
        let name = authz.identifier.as_str();
        let is_ip = Identifier::from_authz_value(name).kind == Identifier::IP;
        let mut outcome = match chal.kind {
            // Never offered for an address (RFC 8738 §7): refused, should a
            // row say otherwise.
            kind if is_ip && kind.is_dns_based() => Err(Problem::new(
                domain::ProblemKind::Unauthorized,
                format!("{kind} cannot validate an IP address (RFC 8738 §7)"),
            )
            .for_identifier(Identifier::from_authz_value(name))),
            ChallengeType::Http01 => {
                challenge::validate_http01(
                    &self.dns,
                    &self.ports,
                    &self.addresses,
                    name,
                    &chal.token,
                    &key_authorization,
                )
                .await
            }
            ChallengeType::Dns01 => {
                challenge::validate_dns01(&self.dns, name, &key_authorization).await
            }
            ChallengeType::DnsAccount01 => {
                dns_account::validate(&self.dns, name, &account_uri, &key_authorization).await
            }
            ChallengeType::DnsPersist01 => {
                // Compared byte for byte with the record's (lowercased) name.
                let issuer_domain_names: Vec<String> = self
                    .caa_policy
                    .issuer_domains
                    .iter()
                    .filter_map(|name| dns_persist::normalise_issuer_domain_name(name))
                    .collect();
                let expected = dns_persist::Expected {
                    issuer_domain_names: &issuer_domain_names,
                    account_uri: &account_uri,
                    wildcard: authz.wildcard,
                    now_secs: now_ms() / 1000,
                };
                dns_persist::validate(&self.dns, name, &expected)
                    .await
                    .map(|_record| ())
            }
            // Never processing for this build (`processing` leaves it).
            ChallengeType::Unknown => {
                return Err(StageError::retry(format!(
                    "challenge type {} unknown to this build",
                    chal.kind
                )));
            }
            ChallengeType::TlsAlpn01 => {
                challenge::validate_tlsalpn01(
                    &self.dns,
                    &self.ports,
                    &self.addresses,
                    name,
                    &key_authorization,
                )
                .await
            }
        };
        // CAA is a DNS record: an IP address has none to check (BR 3.2.2.8
        // applies it to domain names).
        if outcome.is_ok() && !is_ip {
            let identifier = authz.requested_name();
            let request = CaaRequest {
                identifier: &identifier,
                account_uri: Some(&account_uri),
                validation_method: Some(chal.kind.as_str()),
            };
            outcome = dns::caa::check(&self.dns, &request, &self.caa_policy).await;
            // A lookup that failed may well succeed later; a record that
            // forbids will not.
            if let Err(problem) = &outcome
                && problem.kind == domain::ProblemKind::Dns
                && attempt.is_some_and(|a| a < CAA_DNS_ATTEMPTS)
            {
                return Err(StageError::retry(problem));
            }
        }
        Ok(outcome)
    }
}

#[async_trait]
impl Handler for Validator {
    fn stage(&self) -> &'static str {
        "validator"
    }

    async fn handle(&self, job: &Job, attempt: u32) -> Result<Vec<Job>, StageError> {
        match job {
            Job::ValidateChallenge { challenge_id } => self.validate(challenge_id, attempt).await,
            Job::Corroborate {
                challenge_id,
                perspective,
            } => self.corroborate(challenge_id, perspective).await,
            Job::TallyCorroboration { challenge_id } => self.tally(challenge_id).await,
            Job::CorroborateCaa {
                order_id,
                perspective,
                account_id,
                names,
            } => {
                self.corroborate_caa(order_id, perspective, account_id, names)
                    .await
            }
            other => Err(StageError::Permanent(format!(
                "validator got {}",
                other.name()
            ))),
        }
    }

    async fn give_up(&self, job: &Job, reason: &str) {
        if let Job::Corroborate { perspective, .. } | Job::CorroborateCaa { perspective, .. } = job
        {
            // A remote that cannot answer counts as not corroborating at
            // the deadline; the challenge is the primary's to decide.
            tracing::warn!(
                challenge_id = job.subject_id(),
                perspective,
                reason,
                "giving up on a corroboration"
            );
            return;
        }
        tracing::warn!(
            challenge_id = job.subject_id(),
            reason,
            "giving up on challenge"
        );
        let problem = Problem::internal();
        let _ = self
            .store
            .finish_challenge(job.subject_id(), Err(&problem), now_ms())
            .await;
    }
}
