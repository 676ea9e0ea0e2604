//! What a relying party does: from nothing but a leaf, fetch its issuer
//! (AIA) and its CRL (CRL DP) over plain HTTP, and check the CRL is the
//! issuer's, for the leaf's shard, and lists it.

use crate::serial_hex;
use openssl::x509::{X509, X509Crl};
use std::time::{Duration, Instant};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// The bound the revocation tests configure (`publish_within_secs`): a
/// revocation is on the served CRL within it (the updater looks four times per bound).
pub const PUBLISH_WITHIN: Duration = Duration::from_secs(2);
/// What a loaded CI machine may add to the bound (a poll, a commit).
const SLACK: Duration = Duration::from_secs(3);

/// A leaf's CRL DP and AIA caIssuers URLs.
pub fn leaf_urls(leaf: &X509) -> (String, String) {
    let der = leaf.to_der().unwrap();
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    let (mut crl, mut aia) = (None, None);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                if let Some(DistributionPointName::FullName(names)) = &points[0].distribution_point
                    && let GeneralName::URI(url) = names[0]
                {
                    crl = Some(url.to_string());
                }
            }
            ParsedExtension::AuthorityInfoAccess(info) => {
                if let GeneralName::URI(url) = info.accessdescs[0].access_location {
                    aia = Some(url.to_string());
                }
            }
            _ => {}
        }
    }
    (crl.expect("a CRL DP"), aia.expect("an AIA caIssuers URL"))
}

/// GET over plain HTTP; `rewrite` replaces a public base URL (which no
/// test may resolve) with the listener's own loopback address.
async fn fetch(url: &str, rewrite: Option<(&str, &str)>) -> (u16, String, Vec<u8>) {
    assert!(url.starts_with("http://"), "BR 7.1.2.7.7: http only: {url}");
    let url = match rewrite {
        Some((public, listener)) => url.replacen(public, listener, 1),
        None => url.to_string(),
    };
    // Tests reach loopback only: never resolve the public name.
    assert!(url.starts_with("http://127.0.0.1:"), "not loopback: {url}");
    let reply = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = reply.status().as_u16();
    let kind = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, reply.bytes().await.unwrap().to_vec())
}

/// What a relying party does with nothing but `leaf`: fetch its issuer
/// (AIA) and its CRL (CRL DP) until the CRL lists the leaf's serial or the
/// bound (plus slack) has passed since `revoked_at`; checks the CRL is the
/// issuer's, for this shard, and carries `reason`. Returns the CRL (DER).
pub async fn published(
    leaf: &X509,
    revoked_at: Instant,
    reason: Option<u8>,
    rewrite: Option<(&str, &str)>,
) -> Vec<u8> {
    let (crl_url, aia_url) = leaf_urls(leaf);
    let (status, kind, issuer_der) = fetch(&aia_url, rewrite).await;
    assert_eq!((status, kind.as_str()), (200, "application/pkix-cert"));
    let issuer = X509::from_der(&issuer_der).unwrap();
    assert!(
        leaf.verify(&issuer.public_key().unwrap()).unwrap(),
        "the AIA names the issuer"
    );
    let serial = serial_hex(leaf);
    loop {
        let (status, kind, der) = fetch(&crl_url, rewrite).await;
        assert_eq!(
            (status, kind.as_str()),
            (200, "application/pkix-crl"),
            "{crl_url}"
        );
        let crl = X509Crl::from_der(&der).unwrap();
        assert!(
            crl.verify(&issuer.public_key().unwrap()).unwrap(),
            "signed by the issuer"
        );
        let (_, parsed) = CertificateRevocationList::from_der(&der).unwrap();
        let idp = parsed
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::IssuingDistributionPoint(idp) => Some(idp.clone()),
                _ => None,
            });
        let idp = idp.expect("an Issuing Distribution Point");
        let Some(DistributionPointName::FullName(names)) = &idp.distribution_point else {
            panic!("the IDP names its URL");
        };
        assert_eq!(
            names[0],
            GeneralName::URI(&crl_url),
            "the shard the leaf names"
        );
        let entry = parsed.iter_revoked_certificates().find(|r| {
            r.raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                == serial
        });
        if let Some(entry) = entry {
            let listed_reason = entry.reason_code().map(|(_, code)| code.0);
            assert_eq!(listed_reason, reason.filter(|&r| r != 0), "reason code");
            println!(
                "serial {serial} on {crl_url} {:.1?} after the revocation",
                revoked_at.elapsed()
            );
            return der;
        }
        assert!(
            revoked_at.elapsed() <= PUBLISH_WITHIN + SLACK,
            "{serial} not on {crl_url} {:.1?} after its revocation (bound {PUBLISH_WITHIN:?})",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
