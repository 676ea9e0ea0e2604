//! Revocation published by the distributed deployment (RabbitMQ, PostgreSQL,
//! two replicas of every worker): the api's plain-HTTP listener serves the
//! issuer and the CRL each leaf names, a revocation is on that CRL within
//! `[signer.crl] publish_within_secs`, and of the two signer replicas only
//! the one holding the CRL updater's lock signs CRLs.

use instant_acme::{RetryPolicy, RevocationReason, RevocationRequest};
use kiln_tests::cluster::Cluster;
use kiln_tests::instant::{answer_http01, new_account, new_order};
use kiln_tests::relying_party::{PUBLISH_WITHIN, published};
use kiln_tests::{csr_der, parse_chain};
use rustls_pki_types::CertificateDer;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_is_on_the_crl_the_api_serves_and_one_signer_signs() {
    let within = PUBLISH_WITHIN.as_secs().to_string();
    let cluster = Cluster::start("crl", 2, &[("KILN_CRL_PUBLISH_WITHIN_SECS", &within)]).await;
    let name = "crl.cluster.test";
    let account = new_account(&cluster.root_pem_path, &cluster.directory_url, &[]).await;
    let mut order = new_order(&account, &[name]).await;
    answer_http01(&mut order, &cluster.http01).await;
    let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
    order.poll_ready(&retries).await.expect("order ready");
    order
        .finalize_csr(&csr_der(&[name]))
        .await
        .expect("finalized");
    let pem = order.poll_certificate(&retries).await.expect("issued");
    let leaf = parse_chain(&pem)[0].clone();
    let (crl_url, _) = kiln_tests::relying_party::leaf_urls(&leaf);
    assert!(
        crl_url.starts_with(&format!("{}/crl/", cluster.public_base_url)),
        "[acme] public_base_url is in the leaf: {crl_url}"
    );

    let der = leaf.to_der().unwrap();
    let revoked_at = Instant::now();
    account
        .revoke(&RevocationRequest {
            certificate: &CertificateDer::from(der.as_slice()),
            reason: Some(RevocationReason::Superseded),
        })
        .await
        .expect("revoked");
    published(&leaf, revoked_at, Some(4), None).await;

    // One leader: the advisory lock keeps the other replica from signing.
    let mut signing = Vec::new();
    for (replica, addr) in cluster.admin_ports() {
        if replica.starts_with("signer-") {
            let signed: f64 = kiln_tests::metrics::scrape(&addr)
                .await
                .values("kiln_crls_signed_total", &[])
                .iter()
                .sum();
            signing.push((replica, signed));
        }
    }
    let leaders = signing.iter().filter(|(_, n)| *n > 0.0).count();
    assert_eq!((signing.len(), leaders), (2, 1), "{signing:?}");
}
