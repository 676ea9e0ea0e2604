//! Real, unmodified ACME clients get certificates from an in-process Kiln
//! over http-01: certbot (PyPI) and lego (Debian package). Kiln's finalize
//! answers `processing`, so each client must poll the order to `valid`; this
//! is what broke real clients when Let's Encrypt made finalization
//! asynchronous.
//!
//! The clients are required: if one is missing the test fails (CI installs
//! them in `.ci/run`), it does not skip.

use kiln::{EmbeddedConfig, Kiln};
use kiln_tests::clients::{require_binary, run, version};
use kiln_tests::{free_port, parse_chain, san_names, serial_hex, verify_chain};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use kiln_tests::client_commands;

/// A Kiln whose http-01 validation connects to `http01_port`, where the
/// client's own standalone server will listen.
async fn start_kiln(data_dir: &Path, http01_port: u16, finalize_delay: Option<&str>) -> Kiln {
    let mut config = EmbeddedConfig::new(data_dir);
    config.knobs = finalize_delay.map(|delay| kiln::knobs::Knobs {
        finalize_delay: delay.parse().expect("delay"),
        ..Default::default()
    });
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    config.dns_server = None;
    config.http01_port = http01_port;
    config.tlsalpn01_port = free_port();
    Kiln::start(config).await.expect("kiln starts")
}

/// The certificate the client wrote has exactly `names`, its chain verifies
/// to Kiln's root, and Kiln's store shows the order that issued it went
/// through `processing` to `valid`.
async fn check_issued(kiln: &Kiln, cert_path: &Path, names: &[&str], context: &str) {
    let pem = std::fs::read_to_string(cert_path).unwrap_or_else(|e| {
        panic!(
            "the client did not write {}: {e}\n{context}",
            cert_path.display()
        )
    });
    let chain = parse_chain(&pem);
    assert_eq!(chain.len(), 2, "leaf then intermediate\n{context}");
    verify_chain(&chain, &kiln.root_pem)
        .unwrap_or_else(|e| panic!("chain does not verify to root.pem: {e}\n{context}"));
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(
        san_names(&chain[0]),
        want,
        "exactly the requested names\n{context}"
    );

    let leaf_der = chain[0].to_der().expect("leaf DER");
    let serial = serial_hex(&chain[0]);
    let record = kiln
        .store
        .certificate(&serial)
        .await
        .expect("store")
        .unwrap_or_else(|| panic!("Kiln has no certificate {serial}"));
    assert_eq!(
        record.final_der.as_deref(),
        Some(leaf_der.as_slice()),
        "Kiln issued exactly the certificate the client holds"
    );
    let order = kiln
        .store
        .order(&record.order_id)
        .await
        .expect("store")
        .expect("the certificate's order");
    assert_eq!(order.status.as_str(), "valid", "the order ended valid");
    assert!(
        order.processing_since.is_some(),
        "the order was finalized asynchronously (went through processing)"
    );
    assert_eq!(order.certificate_serial.as_deref(), Some(serial.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_gets_a_certificate_over_http01() {
    certbot_issues(None, None).await;
}

/// certbot's `--required-profile` (draft-ietf-acme-profiles): the order
/// names the profile, and the certificate has its 160-hour lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_gets_a_shortlived_certificate_by_profile() {
    certbot_issues(None, Some(("shortlived", 160 * 3600))).await;
}

/// Issuance that really takes 5 s after finalize: the client must keep
/// polling through `processing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_copes_with_a_5s_finalize_delay() {
    certbot_issues(Some("5s"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_gets_a_certificate_over_http01() {
    lego_issues(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_copes_with_a_5s_finalize_delay() {
    lego_issues(Some("5s")).await;
}

/// With a finalize delay, the order was `processing` at least that long.
async fn check_delay(kiln: &Kiln, names: &[&str], finalize_delay: Option<&str>) {
    let Some(delay) = finalize_delay else { return };
    let delay = kiln::knobs::parse_duration(delay).unwrap();
    let observations = kiln.store.finalize_observations(0).await.unwrap();
    assert_eq!(observations.len(), 1, "one finalize answered processing");
    let order = kiln
        .store
        .order(&observations[0].order_id)
        .await
        .unwrap()
        .unwrap();
    let took = order.timeline.completed_at.unwrap() - order.processing_since.unwrap();
    assert!(
        took >= delay.as_millis() as i64,
        "{names:?}: processing for {took} ms, less than {delay:?}"
    );
    assert!(
        observations[0].polls >= 1,
        "the client polled through processing"
    );
}

/// `profile`: the profile certbot is told to require, with the lifetime (s)
/// its certificate must have.
/// The client's certificate came from an order in `profile` and lives
/// `lifetime` seconds (RFC 5280 counts both ends).
async fn check_profile(kiln: &Kiln, cert_path: &Path, profile: &str, lifetime: i64) {
    let leaf = parse_chain(&std::fs::read_to_string(cert_path).unwrap())[0].clone();
    let span = leaf.not_before().diff(leaf.not_after()).unwrap();
    assert_eq!(
        i64::from(span.days) * 86_400 + i64::from(span.secs) + 1,
        lifetime,
        "{profile}"
    );
    let serial = serial_hex(&leaf);
    let record = kiln
        .store
        .certificate(&serial)
        .await
        .unwrap()
        .expect("on record");
    let order = kiln.store.order(&record.order_id).await.unwrap().unwrap();
    assert_eq!(order.profile.name(), profile);
}

async fn certbot_issues(finalize_delay: Option<&str>, profile: Option<(&str, i64)>) {
    let certbot = require_binary(
        "certbot",
        "install the PyPI package `certbot` (pip install certbot)",
    );
    let client = version(&certbot).await;

    let data_dir = tempfile::tempdir().expect("temp dir");
    let client_dir = tempfile::tempdir().expect("temp dir");
    let http01_port = free_port();
    let kiln = start_kiln(data_dir.path(), http01_port, finalize_delay).await;
    let names = ["certbot.interop.test", "www.certbot.interop.test"];
    let (mut command, dirs) =
        client_commands::certbot_certonly(&certbot, &kiln, http01_port, client_dir.path(), &names);
    if let Some((name, _)) = profile {
        command.args(["--required-profile", name]);
    }
    let logs = dirs.log_files();
    let outcome = run(&client, command, client_dir.path(), &logs).await;
    assert!(outcome.status.success(), "{}", outcome.context);
    let fullchain = dirs.live(names[0]).join("fullchain.pem");
    check_issued(&kiln, &fullchain, &names, &outcome.context).await;
    check_delay(&kiln, &names, finalize_delay).await;
    if let Some((name, lifetime)) = profile {
        check_profile(&kiln, &fullchain, name, lifetime).await;
    }
    println!(
        "{client}: certificate for {names:?} in {:.1?}",
        outcome.took
    );
    kiln.shutdown().await;
}

async fn lego_issues(finalize_delay: Option<&str>) {
    let lego = require_binary(
        "lego",
        "install the Debian package `lego` (apt-get install lego)",
    );
    let client = version(&lego).await;

    let data_dir = tempfile::tempdir().expect("temp dir");
    let client_dir = tempfile::tempdir().expect("temp dir");
    let http01_port = free_port();
    let kiln = start_kiln(data_dir.path(), http01_port, finalize_delay).await;
    let names = ["lego.interop.test", "www.lego.interop.test"];

    let mut command = client_commands::lego(&lego, &kiln, http01_port, client_dir.path(), &names);
    command.arg("run");
    let outcome = run(&client, command, client_dir.path(), &[]).await;
    assert!(outcome.status.success(), "{}", outcome.context);
    let (bundle, _) = client_commands::lego_certificate(client_dir.path(), names[0]);
    check_issued(&kiln, &bundle, &names, &outcome.context).await;
    check_delay(&kiln, &names, finalize_delay).await;
    println!(
        "{client}: certificate for {names:?} in {:.1?}",
        outcome.took
    );
    kiln.shutdown().await;
}
