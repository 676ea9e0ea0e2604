//! ACME Renewal Information (RFC 9773): `GET {renewalInfo}/{certID}`
//! suggests when to renew a certificate, and newOrder's `replaces` names the
//! certificate an order renews. Both name it by its certID (§4.1):
//! base64url(AKI keyIdentifier) "." base64url(DER serial number bytes).
//!
//! The window is Let's Encrypt's; a revoked certificate, or one an operator
//! marked with `kiln ari renew-now`, gets a window in the past, so clients
//! renew at once (§4.2).

use super::auth::PathId;
use super::response::Reply;
use super::{ApiResult, Shared};
use crate::Api;
use crate::error::ApiError;
use crate::resources::rfc3339;
use axum::extract::State;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::ProblemKind;
use serde_json::json;
use std::collections::BTreeSet;
use store::{CertificateState, RenewalFacts, now_ms};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// `Retry-After` on every renewal-info answer (§4.3.2): how long a client
/// waits before asking again. Let's Encrypt's six hours, so a window moved
/// by a revocation or `kiln ari renew-now` reaches every client within that.
pub(super) const RETRY_AFTER_SECS: u64 = 6 * 3600;

/// Below this validity a certificate is short-lived: Let's Encrypt then
/// suggests renewing half way through rather than two thirds.
const SHORT_LIVED_MS: i64 = 10 * 24 * 3600 * 1000;

/// A certificate named as RFC 9773 §4.1 names it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CertId {
    key_id: Vec<u8>,
    /// The DER INTEGER's content bytes, as in the certificate.
    serial: Vec<u8>,
}

impl CertId {
    /// Parses a certID; anything but two unpadded base64url parts, the
    /// second a serial of at most 20 octets (RFC 5280 §4.1.2.2), is
    /// `malformed`.
    pub(super) fn parse(text: &str) -> Result<CertId, ApiError> {
        let malformed = |why: &str| {
            ApiError::new(
                ProblemKind::Malformed,
                format!(
                    "certID {text:?} {why}; expected base64url(AKI keyIdentifier) \".\" base64url(serial), unpadded (RFC 9773 §4.1)"
                ),
            )
        };
        let Some((key_id, serial)) = text.split_once('.') else {
            return Err(malformed("has no \".\""));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok().filter(|b| !b.is_empty());
        let key_id = decode(key_id).ok_or_else(|| malformed("has no key identifier"))?;
        let serial = decode(serial).ok_or_else(|| malformed("has no serial number"))?;
        if serial.len() > 20 {
            return Err(malformed("has a serial number longer than 20 octets"));
        }
        Ok(CertId { key_id, serial })
    }

    /// The serial as the store keys it: lowercase hex of the DER bytes,
    /// which are exactly the bytes Kiln's signer drew.
    pub(super) fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A suggested renewal window, unix milliseconds (whole seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Window {
    pub start: i64,
    pub end: i64,
}

/// Let's Encrypt's window (boulder `core.RenewalInfoSimple`): centred two
/// thirds of the way through the validity (half way when it is under ten
/// days), 1% of the validity either side — short, to spread renewals, and
/// a third of the lifetime left to retry in. A 90-day certificate: day 60,
/// ±21.6 hours.
pub(super) fn suggested_window(not_before: i64, not_after: i64) -> Window {
    // notAfter is inclusive (RFC 5280 §4.1.2.5): validity ends a second later.
    let validity = (not_after + 1000 - not_before).max(0);
    let before_expiry = match validity < SHORT_LIVED_MS {
        true => validity / 2,
        false => validity / 3,
    };
    let ideal = not_after - before_expiry;
    let margin = validity / 100;
    Window {
        start: whole_seconds(ideal - margin),
        end: whole_seconds(ideal + margin),
    }
}

/// A window already over (Let's Encrypt's `RenewalInfoImmediate`: from an
/// hour ago, 30 minutes long): the client renews now (§4.2).
pub(super) fn immediate_window(now: i64) -> Window {
    let start = whole_seconds(now - 3_600_000);
    Window {
        start,
        end: start + 1_800_000,
    }
}

fn whole_seconds(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

/// The window for a certificate, and the page explaining it, if any.
fn window_for(facts: &RenewalFacts, now: i64) -> (Window, Option<String>) {
    match (&facts.renew_now, facts.revoked_at) {
        (Some(mark), _) => (immediate_window(now), mark.explanation_url.clone()),
        (None, Some(_)) => (immediate_window(now), None),
        (None, None) => (suggested_window(facts.not_before, facts.not_after), None),
    }
}

/// `GET {renewalInfo}/{certID}` (§4.1): no JWS, no account.
pub async fn renewal_info(State(api): Shared, PathId(cert_id): PathId) -> ApiResult {
    let id = CertId::parse(&cert_id)?;
    let (facts, _) = issued(&api, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("certificate with this certID"))?;
    let (window, explanation) = window_for(&facts, now_ms());
    let mut doc = json!({
        "suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)},
    });
    if let Some(url) = explanation {
        doc["explanationURL"] = json!(url);
    }
    Ok(Reply::ok(doc)
        .retry_after(Some(RETRY_AFTER_SECS.to_string()))
        .into_response())
}

/// The issued certificate `id` names, with its dNSName SANs: `None` when no
/// issued certificate has that serial, or its AKI is not `id`'s.
async fn issued(api: &Api, id: &CertId) -> Result<Option<(RenewalFacts, Vec<String>)>, ApiError> {
    let Some(facts) = api.store.renewal_facts(&id.serial_hex()).await? else {
        return Ok(None);
    };
    if facts.state != CertificateState::Issued {
        return Ok(None);
    }
    let Some((key_id, names)) = facts.final_der.as_deref().and_then(aki_and_names) else {
        return Ok(None);
    };
    Ok((key_id == id.key_id).then_some((facts, names)))
}

/// A certificate's AKI keyIdentifier and its dNSName (lowercase) and
/// iPAddress (text form) SANs.
fn aki_and_names(der: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut key_id = None;
    let mut names = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                names.extend(san.general_names.iter().filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    GeneralName::IPAddress(octets) => {
                        domain::ip_address::from_octets(octets).map(|ip| ip.to_string())
                    }
                    _ => None,
                }));
            }
            _ => {}
        }
    }
    Some((key_id?, names))
}

/// The serial of the certificate a newOrder's `replaces` names (§5),
/// checked as Let's Encrypt checks it: it exists (else `malformed`), the
/// requesting account ordered it (else `unauthorized`, 403), and it shares
/// an identifier with the new order (else `malformed`). Whether another
/// order replaces it already is the store's to decide, as it inserts.
pub(super) async fn replaced_serial(
    api: &Api,
    account_id: &str,
    names: &BTreeSet<String>,
    cert_id: &str,
) -> Result<String, ApiError> {
    let id = CertId::parse(cert_id)?;
    let Some((facts, cert_names)) = issued(api, &id).await? else {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            format!("\"replaces\": no certificate issued by this CA has certID {cert_id:?}"),
        ));
    };
    if facts.account_id != account_id {
        return Err(ApiError::new(
            ProblemKind::Unauthorized,
            "\"replaces\" names a certificate this account did not order",
        ));
    }
    if !cert_names.iter().any(|n| names.contains(n)) {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "\"replaces\": the order shares no identifier with the certificate it replaces",
        ));
    }
    Ok(facts.serial)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;

    #[test]
    fn a_cert_id_is_two_unpadded_base64url_parts() {
        let id = CertId::parse("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap();
        assert_eq!(id.serial, [0x00, 0x87, 0x65, 0x43, 0x21]);
        assert_eq!(id.serial_hex(), "0087654321");
        assert_eq!(id.key_id.len(), 20);
        for bad in [
            "",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ",
            ".AIdlQyE",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE=",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AId.lQyE",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AI+lQyE",
            "AQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let err = CertId::parse(bad).unwrap_err();
            assert_eq!(err.problem.kind, ProblemKind::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn the_window_is_two_thirds_through_with_one_percent_either_side() {
        let not_before = 1_700_000_000_000;
        let not_after = not_before + 90 * DAY - 1000;
        let w = suggested_window(not_before, not_after);
        let ideal = not_after - 30 * DAY;
        let margin = 90 * DAY / 100;
        assert_eq!(
            w,
            Window {
                start: ideal - margin,
                end: ideal + margin
            }
        );
        assert!(not_before < w.start && w.end < not_after);
    }

    #[test]
    fn a_short_lived_certificate_renews_half_way() {
        let not_before = 1_700_000_000_000;
        let not_after = not_before + 160 * 3600 * 1000 - 1000;
        let w = suggested_window(not_before, not_after);
        let half = not_before + 80 * 3600 * 1000;
        assert!(w.start < half && half < w.end, "{w:?}");
        assert_eq!(w.end - w.start, 2 * (160 * 3600 * 1000 / 100) / 1000 * 1000);
    }

    #[test]
    fn the_immediate_window_is_over() {
        let now = 1_700_000_000_123;
        let w = immediate_window(now);
        assert!(w.start < w.end && w.end < now);
        assert_eq!((w.start % 1000, w.end % 1000), (0, 0));
    }
}
