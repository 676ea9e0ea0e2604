//! The `signer` stage: the only code that holds the CA's private key
//! (invariant 8). It signs twice per order: the precertificate, then the
//! final certificate once the SCTs are stored.

use crate::ca::IssuingCa;
use crate::certificate::{
    CertError, LeafRequest, Profile, final_certificate_der, precertificate_der,
};
use crate::crls::CrlConfig;
use crate::refusal::{internal, refusal};
use crate::serial::{new_serial, serial_hex};
use async_trait::async_trait;
use domain::{FinalizeStep, OrderStatus};
use proto::Job;
use queue::{Handler, StageError};
use std::time::Duration;
use store::{CertificateState, NewCertificate, Order, Store, now_ms};
use tracing::{error, info, warn};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

pub struct Signer {
    pub store: Store,
    pub ca: IssuingCa,
    pub profile: Profile,
    /// Distinguishes serials of signer deployments (0x01..=0x7f).
    pub serial_prefix: u8,
    /// Which CRL shard each new certificate goes to (its CRL DP).
    pub crl: CrlConfig,
    pub step_timeout: Duration,
}

impl Signer {
    /// Records the issuing certificate in the store, before the first
    /// certificate names it; run at every start (a no-op once recorded).
    pub async fn record_issuer(&self) -> Result<(), StageError> {
        let issuer = self
            .ca
            .issuer_record()
            .map_err(|e| StageError::Permanent(e.to_string()))?;
        self.store
            .record_issuer(&issuer)
            .await
            .map_err(StageError::retry)
    }

    fn deadline(&self) -> i64 {
        now_ms() + self.step_timeout.as_millis() as i64
    }

    /// Loads the order if it is processing at `step`; otherwise says which
    /// job (if any) should run instead.
    async fn order_at(
        &self,
        order_id: &str,
        step: FinalizeStep,
    ) -> Result<Result<Order, Vec<Job>>, StageError> {
        let order = self
            .store
            .order(order_id)
            .await
            .map_err(StageError::retry)?;
        let Some(order) = order else {
            return Err(StageError::Permanent(format!(
                "order {order_id} does not exist"
            )));
        };
        Ok(match (order.status, order.step) {
            (OrderStatus::Processing, Some(s)) if s == step => Ok(order),
            _ => Err(order.job_for_current_step().into_iter().collect()),
        })
    }

    async fn sign_precert(&self, order_id: &str) -> Result<Vec<Job>, StageError> {
        let order = match self.order_at(order_id, FinalizeStep::SignPrecert).await? {
            Ok(order) => order,
            Err(jobs) => return Ok(jobs),
        };
        let csr_der = order
            .csr
            .as_deref()
            .ok_or_else(|| StageError::Permanent("processing order has no CSR".into()))?;
        let public_key_der = csr_public_key(csr_der)
            .map_err(|e| StageError::Permanent(format!("stored CSR unreadable: {e}")))?;
        // Named as the blocklist names keys (the api's `csr::key_digest`), so
        // a keyCompromise revocation finds every certificate for the key.
        let key = match pkix::canonical_spki_der(&public_key_der) {
            Ok(canonical) => store::KeyDigest::of_spki(&canonical),
            Err(e) => {
                // A key the api let through but OpenSSL cannot read is the
                // CSR's fault, as the precertificate builder would say.
                warn!(order_id, error = %e, "the CSR's key cannot be read");
                let unreadable = CertError::UnsupportedKey("the key cannot be read".into());
                let problem = refusal(order_id, "precertificate", &unreadable);
                self.store
                    .fail_order(order_id, &problem)
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![]);
            }
        };
        let serial =
            new_serial(self.serial_prefix).map_err(|e| StageError::Permanent(e.to_string()))?;
        let issuer_id = self.ca.intermediate.id();
        let crl_shard = self.crl.shard_of(&serial);
        let profile = self
            .profile
            .for_order(order.profile)
            .for_crl_shard(&store::crl_name(issuer_id, crl_shard));
        let (not_before, not_after) = profile.validity_window(now_ms() / 1000);
        let request = LeafRequest {
            serial: serial.clone(),
            dns_names: order
                .identifiers
                .iter()
                .filter(|i| i.kind == domain::Identifier::DNS)
                .map(|i| i.value.clone())
                .collect(),
            ip_addresses: order
                .identifiers
                .iter()
                .filter_map(domain::Identifier::ip_address)
                .collect(),
            public_key_der,
            not_before,
            not_after,
        };
        let serial = serial_hex(&serial);
        // Intent first (invariant 5): the serial is on record before any
        // signature exists, so it can never be used twice.
        self.store
            .reserve_serial(&NewCertificate {
                serial: serial.clone(),
                order_id: order_id.to_string(),
                account_id: order.account_id.clone(),
                not_before: not_before * 1000,
                not_after: not_after * 1000,
                issuer_id: issuer_id.to_string(),
                key,
                crl_shard,
            })
            .await
            .map_err(StageError::retry)?;
        let built = precertificate_der(&self.ca.intermediate, &request, &profile);
        crate::lint_metrics::record("precert", built.as_ref().err());
        let der = match built {
            Ok(der) => der,
            Err(e) => {
                // A lint or key failure will not pass on retry.
                let problem = refusal(order_id, "precertificate", &e);
                self.store
                    .fail_order(order_id, &problem)
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![]);
            }
        };
        if !self
            .store
            .store_precert(order_id, &serial, &der, self.deadline())
            .await
            .map_err(StageError::retry)?
        {
            // Another delivery of this job won the race; its serial stands.
            return Ok(vec![]);
        }
        info!(order_id, serial, "precertificate signed");
        Ok(vec![Job::SubmitCt {
            order_id: order_id.to_string(),
        }])
    }

    async fn sign_final(&self, order_id: &str) -> Result<Vec<Job>, StageError> {
        let order = match self.order_at(order_id, FinalizeStep::SignFinal).await? {
            Ok(order) => order,
            Err(jobs) => return Ok(jobs),
        };
        let serial = order
            .certificate_serial
            .clone()
            .ok_or_else(|| StageError::Permanent("order at sign-final has no serial".into()))?;
        let cert = self
            .store
            .certificate(&serial)
            .await
            .map_err(StageError::retry)?
            .ok_or_else(|| StageError::Permanent(format!("serial {serial} not on record")))?;
        match cert.state {
            CertificateState::Precert => {}
            // A signature for this serial may exist already (a crash after
            // signing, or a concurrent delivery): never sign it again. Start
            // over with a new serial; the precertificate stays on record.
            CertificateState::FinalSigning => {
                warn!(
                    order_id,
                    serial, "final signing was begun before; restarting with a new serial"
                );
                self.store
                    .restart_issuance(order_id, &serial, self.deadline())
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![Job::SignPrecert {
                    order_id: order_id.to_string(),
                }]);
            }
            // A concurrent delivery finished (the order is valid in the same
            // transaction) or started over with a new serial (and published
            // its job): nothing left for this one to do.
            CertificateState::Issued | CertificateState::Abandoned => {
                info!(order_id, serial, state = ?cert.state, "sign-final already handled by another delivery");
                return Ok(vec![]);
            }
            CertificateState::Reserved => {
                return Err(StageError::Permanent(format!(
                    "serial {serial} has no precertificate at sign-final"
                )));
            }
        }
        let (Some(precert_der), Some(sct_list)) = (&cert.precert_der, &cert.sct_list) else {
            return Err(StageError::Permanent(format!(
                "serial {serial} lacks precert or SCTs"
            )));
        };
        if !self
            .store
            .begin_final_signing(&serial)
            .await
            .map_err(StageError::retry)?
        {
            // Someone else began it between our read and now.
            return Ok(vec![]);
        }
        let built = final_certificate_der(&self.ca.intermediate, precert_der, sct_list);
        crate::lint_metrics::record("final", built.as_ref().err());
        let der = match built {
            Ok(der) => der,
            Err(e) => {
                let problem = refusal(order_id, "final certificate", &e);
                self.store
                    .fail_order(order_id, &problem)
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![]);
            }
        };
        if !self
            .store
            .store_final(order_id, &serial, &der)
            .await
            .map_err(StageError::retry)?
        {
            // The serial was abandoned meanwhile (a concurrent delivery found
            // signing begun and started over): this signature is never
            // stored nor served, and the order carries on with a new serial.
            warn!(
                order_id,
                serial, "final certificate discarded: its serial was abandoned"
            );
            return Ok(vec![]);
        }
        info!(order_id, serial, "certificate issued");
        // Logging the final certificate too is best effort, after the fact.
        Ok(vec![Job::SubmitFinal {
            order_id: order_id.to_string(),
        }])
    }
}

/// The SubjectPublicKeyInfo of a DER CSR, as its bytes: the api checked
/// the CSR (and its key) at finalize, and the builder reads the key itself.
fn csr_public_key(csr_der: &[u8]) -> Result<Vec<u8>, String> {
    match X509CertificationRequest::from_der(csr_der) {
        Ok(([], csr)) => Ok(csr.certification_request_info.subject_pki.raw.to_vec()),
        Ok(_) => Err("trailing data after the request".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[async_trait]
impl Handler for Signer {
    fn stage(&self) -> &'static str {
        "signer"
    }

    async fn handle(&self, job: &Job, _attempt: u32) -> Result<Vec<Job>, StageError> {
        match job {
            Job::SignPrecert { order_id } => self.sign_precert(order_id).await,
            Job::SignFinal { order_id } => self.sign_final(order_id).await,
            other => Err(StageError::Permanent(format!(
                "signer got {}",
                other.name()
            ))),
        }
    }

    async fn give_up(&self, job: &Job, reason: &str) {
        // The store's give-up, with the signer's detail for the client.
        let order_id = job.subject_id();
        error!(order_id, reason, "giving up on order");
        if let Err(e) = self.store.fail_order(order_id, &internal(order_id)).await {
            warn!(order_id, error = %e, "could not mark the order invalid; the sweeper will");
        }
    }
}
