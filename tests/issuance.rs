//! A real ACME client (instant-acme) gets certificates from an in-process
//! Kiln: finalize answers `processing`, the client polls to `valid`, and the
//! certificate is what the order asked for, with verifiable embedded SCTs.

use dns::testing::TestDnsServer;
use instant_acme::{Account, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy};
use kiln_tests::instant::{answer_dns01, answer_http01, new_account, new_order};
use kiln_tests::{
    Http01Responder, TestKiln, csr_der, has_poison, parse_chain, san_names, verify_chain,
};
use std::time::Duration;

async fn account(kiln: &TestKiln) -> Account {
    let contact = ["mailto:client@kiln.test"];
    new_account(&kiln.kiln.root_pem_path, &kiln.directory_url(), &contact).await
}

/// Where a test publishes challenge responses.
enum Responder<'a> {
    Http(&'a Http01Responder),
    Dns(&'a TestDnsServer),
}

/// Answers every authorization's challenge through `responder` (http-01
/// or dns-01), waits for `ready`.
async fn authorize(order: &mut Order, responder: Responder<'_>) {
    match responder {
        Responder::Http(http01) => answer_http01(order, http01).await,
        Responder::Dns(dns) => answer_dns01(order, dns).await,
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(30));
    assert_eq!(
        order.poll_ready(&retry).await.expect("order ready"),
        OrderStatus::Ready
    );
}

/// Finalizes, checks the immediate answer is `processing`, polls to the
/// certificate and checks it thoroughly.
async fn finalize_and_check(kiln: &TestKiln, order: &mut Order, names: &[&str]) {
    order
        .finalize_csr(&csr_der(names))
        .await
        .expect("finalize accepted");
    assert_eq!(
        order.state().status,
        OrderStatus::Processing,
        "async finalization answers processing"
    );
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(60));
    let pem = order
        .poll_certificate(&retry)
        .await
        .expect("certificate issued");
    let chain = parse_chain(&pem);
    assert_eq!(chain.len(), 2, "leaf then intermediate");
    verify_chain(&chain, &kiln.kiln.root_pem).expect("chain verifies to root.pem");
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(san_names(&chain[0]), want, "exactly the order's names");
    let leaf_der = chain[0].to_der().unwrap();
    assert!(!has_poison(&leaf_der), "final certificate has no poison");
    check_scts(kiln, &leaf_der, &chain[1].to_der().unwrap());
}

/// At least two SCTs, from two different logs, each verifying against its
/// log's key over the precertificate entry the final certificate implies.
fn check_scts(kiln: &TestKiln, leaf_der: &[u8], issuer_der: &[u8]) {
    let scts = ct::scts_from_certificate(leaf_der).expect("SCT list");
    assert!(scts.len() >= 2, "at least two SCTs, got {}", scts.len());
    let tbs = ct::tbs_without_extension(leaf_der, ct::SCT_LIST_OID).unwrap();
    let key_hash = ct::issuer_key_hash(issuer_der).unwrap();
    let mut logs_seen = std::collections::BTreeSet::new();
    for sct in &scts {
        let log = kiln
            .kiln
            .ct_logs
            .iter()
            .find(|l| ct::log_id(&l.log.public_key_der) == sct.log_id)
            .expect("SCT from a configured log");
        let signed =
            ct::precert_signed_data(sct.timestamp, &key_hash, &tbs, &sct.extensions).unwrap();
        ct::verify_sct(sct, &log.log.public_key_der, &signed).expect("SCT signature verifies");
        logs_seen.insert(log.log.operator.clone());
    }
    assert!(logs_seen.len() >= 2, "SCTs from two operators");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_order_is_finalized_asynchronously() {
    let kiln = TestKiln::start(None).await;
    let account = account(&kiln).await;
    let names = ["www.kiln-e2e.test", "kiln-e2e.test"];
    let mut order = new_order(&account, &names).await;
    authorize(&mut order, Responder::Http(&kiln.http01)).await;
    finalize_and_check(&kiln, &mut order, &names).await;
    kiln.kiln.shutdown().await;
    // `kiln audit` on what it stored (issue 16): clean, and it verified
    // the certificate's SCTs.
    kiln_tests::cluster::ensure_binaries_built().await;
    let verdict = kiln_tests::audit::data_dir(kiln.data_dir.path(), &[]);
    println!("[issuance] audit: {}", verdict.summary());
    verdict.assert_clean("issuance");
    assert_eq!(verdict.check(7)["checked"], 1, "{:#}", verdict.doc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_wildcard_order_is_finalized_asynchronously() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;
    let names = ["*.dns-e2e.test", "dns-e2e.test"];
    let mut order = new_order(&account, &names).await;
    authorize(&mut order, Responder::Dns(&dns)).await;
    finalize_and_check(&kiln, &mut order, &names).await;
    kiln.kiln.shutdown().await;
}

/// Restarting on the same data directory keeps the CA, the accounts and the
/// orders: the client carries on with the same account and order URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_ca_accounts_and_orders() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_path_buf();
    let port = kiln_tests::free_port();
    let first = TestKiln::start_at(&dir, port, None).await;
    let root_before = first.kiln.root_pem.clone();
    let (account, credentials) = Account::builder_with_root(&first.kiln.root_pem_path)
        .unwrap()
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            first.directory_url(),
            None,
        )
        .await
        .unwrap();
    let ids = [Identifier::Dns("restart.kiln-e2e.test".into())];
    let order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    let order_url = order.url().to_string();
    first.kiln.shutdown().await;

    let second = TestKiln::start_at(&dir, port, None).await;
    assert_eq!(second.kiln.root_pem, root_before, "same CA after restart");
    let account = Account::builder_with_root(&second.kiln.root_pem_path)
        .unwrap()
        .from_credentials(credentials)
        .await
        .expect("account still known");
    let mut order = account.order(order_url).await.expect("order still there");
    authorize(&mut order, Responder::Http(&second.http01)).await;
    finalize_and_check(&second, &mut order, &["restart.kiln-e2e.test"]).await;
    second.kiln.shutdown().await;
}

/// One process per data directory: the api keeps used nonces and accounts
/// in memory, which a second process on the same database would not see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_kiln_on_a_running_data_directory_is_refused() {
    let running = TestKiln::start(None).await;
    let mut config = kiln::EmbeddedConfig::new(running.data_dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let refused = kiln::Kiln::start(config).await.err().expect("refused");
    assert!(
        refused
            .to_string()
            .contains("another kiln is already running"),
        "{refused:#}"
    );
    running.kiln.shutdown().await;
}
