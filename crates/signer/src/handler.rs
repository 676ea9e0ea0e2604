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

/// Who holds an order's sign-precert step ([`Signer::precert_claim`]).
enum Claim {
    Unclaimed,
    /// A claim presumed dead: superseded by claiming with a fresh serial.
    Stale(String),
    /// A claim whose signer may be at work, or a state this build does not
    /// know: left alone.
    Held,
    /// The serial read with the order has moved past its claim: the order
    /// was read just before another delivery stored its precertificate (or
    /// restarted the issuance), so it is read again.
    Moved(String),
}

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
        let superseding = match self.precert_claim(&order).await? {
            Claim::Unclaimed => None,
            Claim::Stale(serial) => Some(serial),
            Claim::Held => return Ok(vec![]),
            Claim::Moved(serial) => return self.after_moved_claim(order_id, &serial).await,
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
        // Intent first (invariant 5): the serial claims the order's step,
        // `precert-signing` and revocable, before any signature exists. Of
        // two deliveries of this job only one claims; the other never signs.
        // The claim also refuses a key blocked since finalize (a
        // keyCompromise revocation while the order was in flight), in the
        // claim's own statement, and then ends the order `invalid`.
        let now = now_ms();
        let claimed = self
            .store
            .claim_precert(
                &NewCertificate {
                    serial: serial.clone(),
                    order_id: order_id.to_string(),
                    account_id: order.account_id.clone(),
                    not_before: not_before * 1000,
                    not_after: not_after * 1000,
                    issuer_id: issuer_id.to_string(),
                    key,
                    crl_shard,
                },
                superseding.as_deref(),
                now,
                now + self.step_timeout.as_millis() as i64,
            )
            .await
            .map_err(StageError::retry)?;
        if !claimed {
            info!(
                order_id,
                "sign-precert not claimed (another delivery holds it, or the CSR's key is blocked); not signing"
            );
            return Ok(vec![]);
        }
        let built = precertificate_der(&self.ca.intermediate, &request, &profile);
        crate::lint_metrics::record("precert", built.as_ref().err());
        let der = match built {
            Ok(der) => der,
            Err(e) => {
                // A lint or key failure will not pass on retry. The serial
                // stays `precert-signing`: revocable, never reused.
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
            // The claim was superseded as stale (this signing took longer
            // than the step's timeout) or the order ended meanwhile: the
            // precertificate is on record, its serial abandoned.
            warn!(
                order_id,
                serial, "precertificate kept on an abandoned serial: its claim was superseded"
            );
            return Ok(vec![]);
        }
        info!(order_id, serial, "precertificate signed");
        Ok(vec![Job::SubmitCt {
            order_id: order_id.to_string(),
        }])
    }

    /// Who holds the sign-precert step of `order` (at that step): nobody,
    /// another signer, or a signer presumed dead.
    ///
    /// The crash rule. A claim is the serial the order names while at
    /// sign-precert, whose row is `precert-signing` and `created_at` the
    /// claim's time. A claim younger than the step timeout is held: its
    /// signer may be signing right now (on another replica, or a
    /// concurrent delivery here), and will store its precertificate and
    /// publish SubmitCt; if it died, the order's step deadline (set by the
    /// claim to the same instant the claim turns stale) makes the sweeper
    /// re-drive it, and that delivery finds the claim stale. A stale claim
    /// is superseded with a fresh serial, by a compare-and-set on the stale
    /// serial, so of several deliveries finding it stale one wins. Signing
    /// takes milliseconds against a timeout of seconds, so a live signer is
    /// superseded only if it stalled longer than the timeout, and even then
    /// nothing is lost: its serial stays `precert-signing` (revocable,
    /// never reused), and a precertificate it still signs is recorded on
    /// that row (`store_precert`). The rule only decides how soon an order
    /// recovers, never whether a signature goes unrecorded, so it holds with
    /// any number of signer replicas (sharing the step timeout, and clocks
    /// within it).
    async fn precert_claim(&self, order: &Order) -> Result<Claim, StageError> {
        let Some(serial) = &order.certificate_serial else {
            return Ok(Claim::Unclaimed);
        };
        let cert = self
            .store
            .certificate(serial)
            .await
            .map_err(StageError::retry)?;
        let order_id = order.id.as_str();
        match cert {
            Some(cert) if cert.order_id == order.id => match cert.state {
                CertificateState::PrecertSigning => {
                    let age = now_ms() - cert.created_at;
                    if age < self.step_timeout.as_millis() as i64 {
                        info!(
                            order_id,
                            serial,
                            age_ms = age,
                            "sign-precert is claimed; leaving it"
                        );
                        return Ok(Claim::Held);
                    }
                    warn!(
                        order_id,
                        serial,
                        age_ms = age,
                        "sign-precert claim is stale (its signer died?); abandoning its serial for a new one"
                    );
                    Ok(Claim::Stale(serial.clone()))
                }
                // A newer build's state: its replicas handle the order.
                CertificateState::Unknown => {
                    warn!(
                        order_id,
                        serial, "serial in a state this build does not know; leaving it"
                    );
                    Ok(Claim::Held)
                }
                _ => Ok(Claim::Moved(serial.clone())),
            },
            _ => Err(StageError::Permanent(format!(
                "order at sign-precert names serial {serial}, not on record for it"
            ))),
        }
    }

    /// The order read with `serial` claimed had moved on by the time its
    /// certificate was read: go by the order as it is now. Only an order
    /// still at sign-precert naming that same serial is inconsistent.
    async fn after_moved_claim(
        &self,
        order_id: &str,
        serial: &str,
    ) -> Result<Vec<Job>, StageError> {
        match self.order_at(order_id, FinalizeStep::SignPrecert).await? {
            Err(jobs) => Ok(jobs),
            Ok(order) if order.certificate_serial.as_deref() != Some(serial) => {
                // Restarted with another claim (or none) meanwhile: its
                // holder, or the next delivery, carries it on.
                Ok(vec![])
            }
            Ok(_) => Err(StageError::Permanent(format!(
                "order at sign-precert names serial {serial}, which is past its claim"
            ))),
        }
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
                if !self
                    .store
                    .restart_issuance(order_id, &serial, self.deadline())
                    .await
                    .map_err(StageError::retry)?
                {
                    // Another delivery restarted it (and published the job).
                    return Ok(vec![]);
                }
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
            CertificateState::Reserved | CertificateState::PrecertSigning => {
                return Err(StageError::Permanent(format!(
                    "serial {serial} has no precertificate at sign-final"
                )));
            }
            // A newer build's state: its replicas handle the order.
            CertificateState::Unknown => {
                warn!(
                    order_id,
                    serial, "serial in a state this build does not know; leaving it"
                );
                return Ok(vec![]);
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
