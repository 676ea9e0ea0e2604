//! The CRL updater against a real (SQLite) store and the signer stage: every
//! shard gets a CRL at once, a revocation lands on exactly the shard its
//! leaf's CRL DP names, signed by the issuer, and nothing is re-signed
//! until something is due.

mod fixtures;

use std::sync::Arc;

use openssl::x509::{X509, X509Crl};
use proto::Job;
use queue::Handler;
use signer::Signer;
use signer::certificate::Profile;
use signer::crls::{CrlConfig, CrlUpdater};
use store::{CertificateState, Store, crl_name, now_ms};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

const SHARDS: u32 = 3;

struct Fixture {
    signer: Arc<Signer>,
    updater: CrlUpdater,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let crl = CrlConfig {
        shards: SHARDS,
        ..CrlConfig::default()
    };
    let profile = Profile::for_base_url("http://pki.kiln.test");
    let signer = fixtures::signer_in(dir.path(), profile, crl).await;
    let store = signer.store.clone();
    let updater = CrlUpdater::of(&signer);
    Fixture {
        signer: Arc::new(signer),
        updater,
        store,
        _dir: dir,
    }
}

/// Signs order `id`'s precertificate, and its final certificate too when
/// `finish`; returns the serial.
async fn issue(f: &Fixture, id: &str, finish: bool) -> String {
    fixtures::order_at_sign_precert(&f.store, id).await;
    let job = Job::SignPrecert {
        order_id: id.into(),
    };
    f.signer.handle(&job, 1).await.unwrap();
    let serial = f
        .store
        .order(id)
        .await
        .unwrap()
        .unwrap()
        .certificate_serial
        .unwrap();
    if finish {
        let scts = fixtures::sct_list_extension();
        assert!(
            f.store
                .store_scts(id, &serial, &scts, now_ms() + 30_000)
                .await
                .unwrap()
        );
        let job = Job::SignFinal {
            order_id: id.into(),
        };
        f.signer.handle(&job, 1).await.unwrap();
    }
    serial
}

/// The one CRL DP URL of a certificate.
fn crl_dp(der: &[u8]) -> String {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension()
            && let Some(DistributionPointName::FullName(names)) = &points[0].distribution_point
            && let GeneralName::URI(url) = names[0]
        {
            return url.to_string();
        }
    }
    panic!("no CRL DP");
}

/// The serials (lowercase hex) a CRL lists, after checking its signature
/// with the issuer's key.
fn listed(crl_der: &[u8], issuer: &X509) -> Vec<String> {
    let crl = X509Crl::from_der(crl_der).unwrap();
    assert!(crl.verify(&issuer.public_key().unwrap()).unwrap());
    crl.get_revoked()
        .map(|stack| {
            stack
                .iter()
                .map(|r| hex::encode(r.serial_number().to_bn().unwrap().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_revocation_is_listed_on_the_shard_its_leaf_names() {
    let f = fixture().await;
    let issuer_id = f.signer.ca.intermediate.id().to_string();
    let issuer = f.signer.ca.intermediate.cert.clone();

    // Before anything is revoked, every shard has an empty CRL to serve.
    assert_eq!(f.updater.update(now_ms()).await.unwrap(), SHARDS as usize);
    for shard in 0..SHARDS {
        let crl = f
            .store
            .crl_named(&crl_name(&issuer_id, shard))
            .await
            .unwrap();
        assert!(listed(&crl.unwrap().der, &issuer).is_empty());
    }
    assert_eq!(f.updater.update(now_ms()).await.unwrap(), 0, "nothing due");

    let revoked = issue(&f, "o1", true).await;
    let kept = issue(&f, "o2", true).await;
    let cert = f.store.certificate(&revoked).await.unwrap().unwrap();
    assert_eq!(cert.state, CertificateState::Issued);
    // The precertificate and the certificate name the shard the row holds.
    let name = crl_name(&issuer_id, cert.crl_shard);
    let url = format!("http://pki.kiln.test/crl/{name}");
    assert_eq!(crl_dp(cert.final_der.as_ref().unwrap()), url);
    assert_eq!(crl_dp(cert.precert_der.as_ref().unwrap()), url);

    let before = f.store.crl_named(&name).await.unwrap().unwrap();
    assert!(
        f.store
            .revoke_certificate(&revoked, 4, now_ms())
            .await
            .unwrap()
    );
    assert_eq!(
        f.updater.update(now_ms()).await.unwrap(),
        1,
        "only its shard"
    );
    let after = f.store.crl_named(&name).await.unwrap().unwrap();
    assert!(after.number > before.number, "CRL numbers grow");
    assert_eq!(listed(&after.der, &issuer), vec![revoked.clone()]);
    assert!(!listed(&after.der, &issuer).contains(&kept));
    let crl = X509Crl::from_der(&after.der).unwrap();
    let entry = &crl.get_revoked().unwrap().iter().next().unwrap();
    assert!(entry.revocation_date().to_string().contains("GMT"));
    assert_eq!(f.updater.update(now_ms()).await.unwrap(), 0, "published");
}

#[tokio::test]
async fn a_precertificate_without_its_final_is_listed_once_revoked() {
    let f = fixture().await;
    let issuer = f.signer.ca.intermediate.cert.clone();
    let serial = issue(&f, "o1", false).await;
    let cert = f.store.certificate(&serial).await.unwrap().unwrap();
    assert_eq!(cert.state, CertificateState::Precert);
    assert!(
        f.store
            .revoke_by_operator(&serial, 0, now_ms())
            .await
            .unwrap()
    );
    f.updater.update(now_ms()).await.unwrap();
    let name = crl_name(f.signer.ca.intermediate.id(), cert.crl_shard);
    let crl = f.store.crl_named(&name).await.unwrap().unwrap();
    assert_eq!(listed(&crl.der, &issuer), vec![serial]);
}
