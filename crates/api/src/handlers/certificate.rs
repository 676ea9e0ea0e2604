//! Certificates (RFC 8555 §7.4.2, §7.6): downloading an issued certificate
//! with its chain — or one of its issuer's alternate chains, each linked
//! from the others with `rel="alternate"` — and revokeCert, by the account
//! that ordered it, by an account holding valid authorizations for every
//! name in it, or by the certificate's own key; a keyCompromise
//! revocation, by the key only, blocks the key and revokes every other
//! unexpired certificate for it (BR 4.9.1.1).

use super::auth::{Body, KeyRule, authenticate, not_yours};
use super::{ApiResult, Shared};
use crate::csr;
use crate::error::ApiError;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::ProblemKind;
use serde::Deserialize;
use store::now_ms;

/// Which chain a certificate URL asks for: `/acme/cert/{serial}` the
/// default one, `/acme/cert/{serial}/{n}` alternate `n` (1, 2, …, in
/// decimal as the `Link` headers write it).
#[derive(Deserialize)]
pub(crate) struct CertificatePath {
    serial: String,
    alternate: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CertificatePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<CertificatePath>::from_request_parts(parts, state).await {
            Ok(Path(path)) => Ok(path),
            Err(e) => {
                Err(ApiError::new(ProblemKind::Malformed, e.body_text()).with_status(e.status()))
            }
        }
    }
}

impl CertificatePath {
    /// The alternate chain asked for: `None` for the default chain; an
    /// error for a number written otherwise than the `Link` headers do.
    fn alternate(&self) -> Result<Option<usize>, ApiError> {
        let Some(text) = &self.alternate else {
            return Ok(None);
        };
        match text.parse::<usize>() {
            Ok(n) if n >= 1 && n.to_string() == *text => Ok(Some(n)),
            _ => Err(ApiError::not_found("alternate chain")),
        }
    }
}

pub async fn certificate(
    State(api): Shared,
    path: CertificatePath,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let alternate = path.alternate();
    let serial = path.serial;
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    req.require_post_as_get()?;
    let cert = api
        .store
        .certificate(&serial)
        .await?
        .ok_or_else(|| ApiError::not_found("certificate"))?;
    if cert.account_id != req.account().id {
        return Err(not_yours("certificate"));
    }
    let (Some(der), store::CertificateState::Issued) = (&cert.final_der, cert.state) else {
        return Err(ApiError::not_found("certificate"));
    };
    // The chains of the issuer that signed it, as the signer recorded them.
    let issuer = api
        .store
        .issuer(cert.issuer_id.as_deref())
        .await?
        .ok_or_else(|| ApiError::internal("no issuer recorded for an issued certificate"))?;
    let alternate = alternate?;
    let chain = match alternate {
        None => issuer.chain_pem.as_str(),
        Some(n) => issuer
            .alternate_chain(n)
            .ok_or_else(|| ApiError::not_found("alternate chain"))?,
    };
    if let Err(e) = api.store.observe_download(&cert.order_id, now_ms()).await {
        tracing::warn!(order_id = %cert.order_id, error = %e, "recording a download failed");
    }
    let mut pem = certificate_pem(der);
    pem.push_str(chain);
    let mut response = (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        pem,
    )
        .into_response();
    let base = api.certificate_url(&serial);
    let chains = issuer.alternate_chains_pem.len();
    for link in other_chains(&base, alternate, chains) {
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().append(header::LINK, value);
        }
    }
    Ok(response)
}

/// RFC 8555 §7.4.2: every chain but the one served (`served`: `None` for
/// the default), as `Link: <url>;rel="alternate"` values — from the
/// default chain at `base` the alternates `base/1` … `base/{alternates}`,
/// from an alternate the default and the other alternates.
fn other_chains(base: &str, served: Option<usize>, alternates: usize) -> Vec<String> {
    let default = served.map(|_| base.to_string());
    let numbered = (1..=alternates)
        .filter(|n| Some(*n) != served)
        .map(|n| format!("{base}/{n}"));
    default
        .into_iter()
        .chain(numbered)
        .map(|url| format!("<{url}>;rel=\"alternate\""))
        .collect()
}

#[derive(Deserialize)]
struct RevokePayload {
    certificate: String,
    #[serde(default)]
    reason: Option<i64>,
}

/// RFC 5280 reasons a subscriber may give (CA/B Forum BR §7.2.2 keeps 0, 1,
/// 3, 4, 5); the others are the CA's own or meaningless for a leaf.
const ALLOWED_REASONS: &[i64] = &[0, 1, 3, 4, 5];

/// RFC 5280 CRLReason keyCompromise: the certificate is revoked and its key
/// blocked from then on (BR 6.1.1.3), as an account key and in any CSR.
/// Only a request signed by the certificate's key may give it. A
/// certificate already revoked for another reason is then revoked for
/// keyCompromise instead (its key blocked), so a compromise found later
/// can still be reported.
const KEY_COMPROMISE: i64 = 1;

/// RFC 8555 §7.6: an account other than the one that ordered a certificate
/// may revoke it when it holds a valid, unexpired authorization for each of
/// its names (`*.name` by a wildcard authorization of `name`).
async fn authorized_for_every_name(
    api: &crate::Api,
    account_id: &str,
    cert: &openssl::x509::X509,
) -> Result<bool, ApiError> {
    // Every SAN counts: an address as its text form, as its authorization
    // names it. A SAN of another kind would be one no authorization covers.
    let mut names = Vec::new();
    for name in cert.subject_alt_names().into_iter().flatten() {
        if let Some(dns) = name.dnsname() {
            names.push(dns.to_string());
        } else if let Some(ip) = name.ipaddress().and_then(domain::ip_address::from_octets) {
            names.push(ip.to_string());
        } else {
            return Ok(false);
        }
    }
    if names.is_empty() {
        return Ok(false);
    }
    let now = now_ms();
    for name in &names {
        let (base, wildcard) = match name.strip_prefix("*.") {
            Some(base) => (base, true),
            None => (name.as_str(), false),
        };
        if !api
            .store
            .holds_valid_authz(account_id, base, wildcard, now)
            .await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn already_revoked() -> ApiError {
    ApiError::new(
        ProblemKind::AlreadyRevoked,
        "certificate is already revoked",
    )
}

pub async fn revoke_cert(
    State(api): Shared,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Either).await?;
    let payload: RevokePayload = req.json()?;
    let reason = payload.reason.unwrap_or(0);
    if !ALLOWED_REASONS.contains(&reason) {
        return Err(ApiError::new(
            ProblemKind::BadRevocationReason,
            format!("reason {reason} is not allowed; use one of {ALLOWED_REASONS:?}"),
        ));
    }
    let der = URL_SAFE_NO_PAD
        .decode(&payload.certificate)
        .map_err(|_| ApiError::new(ProblemKind::Malformed, "certificate is not base64url"))?;
    let x509 = openssl::x509::X509::from_der(&der).map_err(|_| {
        ApiError::new(
            ProblemKind::Malformed,
            "certificate is not a DER certificate",
        )
    })?;
    let serial = hex::encode(
        x509.serial_number()
            .to_bn()
            .map_err(ApiError::internal)?
            .to_vec(),
    );
    let cert = api.store.certificate(&serial).await?;
    let cert = match cert {
        Some(c) if c.final_der.as_deref() == Some(der.as_slice()) => c,
        _ => return Err(ApiError::not_found("certificate issued by this CA")),
    };
    // Compared as keys, not SPKI bytes: one EC key has two encodings.
    let cert_key = x509.public_key().map_err(ApiError::internal)?;
    match &req.account {
        Some(account) if account.id != cert.account_id => {
            if !authorized_for_every_name(&api, &account.id, &x509).await? {
                return Err(ApiError::new(
                    ProblemKind::Unauthorized,
                    "the certificate is another account's, and this account holds no valid \
                     authorization for every name in it (RFC 8555 §7.6)",
                ));
            }
        }
        Some(_) => {}
        None => {
            if !cert_key.public_eq(req.key.public_key()) {
                return Err(ApiError::new(
                    ProblemKind::Unauthorized,
                    "the jwk is neither an account key nor the certificate's key",
                ));
            }
        }
    }
    let revoked = if reason == KEY_COMPROMISE {
        // A compromise blocks the key for everyone, so it must be shown:
        // only the key's holder can sign with it. The account that ordered
        // the certificate proved that once, not now (Let's Encrypt asks the
        // same).
        if req.account.is_some() {
            if cert.revoked_at.is_some() {
                return Err(already_revoked());
            }
            return Err(ApiError::new(
                ProblemKind::BadRevocationReason,
                "revoking for keyCompromise (reason 1) needs proof of the compromise: \
                 sign the request with the certificate's key (a jwk header), not the account's",
            ));
        }
        let spki = cert_key.public_key_to_der().map_err(ApiError::internal)?;
        let digest = csr::key_digest(&spki)?;
        let outcome = api
            .store
            .revoke_for_key_compromise(&serial, &digest, now_ms())
            .await?;
        if outcome.revoked {
            tracing::info!(
                serial = %serial,
                key = %digest,
                other_certificates_revoked = outcome.others,
                "key blocked: keyCompromise revocation"
            );
        }
        outcome.revoked
    } else {
        api.store
            .revoke_certificate(&serial, reason, now_ms())
            .await?
    };
    if !revoked {
        return Err(already_revoked());
    }
    tracing::info!(serial = %serial, reason, "certificate revoked");
    Ok(StatusCode::OK.into_response())
}

/// RFC 7468 PEM of a DER certificate: base64 in lines of 64, between the
/// CERTIFICATE labels. Written here rather than by OpenSSL, whose
/// `X509::from_der` (needed first) costs ~200 us per certificate.
fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(encoded.len() + encoded.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    /// Each chain links to every other, never to itself.
    #[test]
    fn every_chain_links_to_the_others() {
        use super::other_chains;
        let base = "https://ca.test/acme/cert/0a";
        let link = |url: &str| format!("<{url}>;rel=\"alternate\"");
        assert!(other_chains(base, None, 0).is_empty(), "no alternates");
        assert_eq!(
            other_chains(base, None, 2),
            [link(&format!("{base}/1")), link(&format!("{base}/2"))]
        );
        assert_eq!(
            other_chains(base, Some(1), 2),
            [link(base), link(&format!("{base}/2"))]
        );
        assert_eq!(other_chains(base, Some(1), 1), [link(base)]);
    }

    /// Alternates are numbered from 1, in the decimal the links use.
    #[test]
    fn alternate_numbers_are_written_one_way() {
        let path = |alternate: Option<&str>| super::CertificatePath {
            serial: "0a".into(),
            alternate: alternate.map(str::to_string),
        };
        assert_eq!(path(None).alternate().ok(), Some(None));
        assert_eq!(path(Some("1")).alternate().ok(), Some(Some(1)));
        assert_eq!(path(Some("12")).alternate().ok(), Some(Some(12)));
        for refused in ["0", "01", "+1", "-1", "one", "", "99999999999999999999999"] {
            assert!(path(Some(refused)).alternate().is_err(), "{refused:?}");
        }
    }

    /// The same PEM OpenSSL writes.
    #[test]
    fn pem_matches_openssl() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        use openssl::x509::{X509Builder, X509NameBuilder};
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "pem test")
            .unwrap();
        let name = name.build();
        let mut builder = X509Builder::new().unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = builder.build();
        let ours = super::certificate_pem(&cert.to_der().unwrap());
        assert_eq!(ours, String::from_utf8(cert.to_pem().unwrap()).unwrap());
    }
}
