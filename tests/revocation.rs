//! Revocation that relying parties can see: real clients (certbot, lego)
//! revoke, and a relying party that knows nothing but the leaf — its CRL
//! DP and its AIA, fetched over plain HTTP — finds the serial on a CRL the
//! issuer signed, within the configured bound. A precertificate whose final
//! certificate was never signed is listed once the operator revokes it
//! (`kiln revoke`), and the served CRLs lint clean under pkilint on a public
//! base URL.

use kiln::knobs::{InjectedFailure, Knobs};
use kiln::{EmbeddedConfig, Kiln};
use kiln_tests::client_commands::{self, certbot_certonly};
use kiln_tests::clients::{require_binary, run, version};
use kiln_tests::{free_port, parse_chain};
use openssl::x509::X509;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const PUBLISH_WITHIN: Duration = kiln_tests::relying_party::PUBLISH_WITHIN;

async fn start_kiln(data_dir: &Path, http01_port: u16, public_base_url: Option<&str>) -> Kiln {
    let mut config = EmbeddedConfig::new(data_dir);
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    config.public_http_listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    config.certificate_base_url = public_base_url.map(str::to_string);
    config.crl.publish_within_secs = PUBLISH_WITHIN.as_secs();
    config.http01_port = http01_port;
    config.tlsalpn01_port = free_port();
    config.knobs = Some(Knobs::default());
    Kiln::start(config).await.expect("kiln starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_revokes_and_the_crl_in_the_leaf_lists_it() {
    let certbot = require_binary("certbot", "pip install certbot");
    let client = version(&certbot).await;
    let (data_dir, client_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let http01_port = free_port();
    let kiln = start_kiln(data_dir.path(), http01_port, None).await;
    let name = "revoke.certbot.test";
    let (issue, dirs) = certbot_certonly(&certbot, &kiln, http01_port, client_dir.path(), &[name]);
    let logs = dirs.log_files();
    let issued = run(&client, issue, client_dir.path(), &logs).await;
    assert!(issued.status.success(), "{}", issued.context);
    let cert_path = dirs.live(name).join("cert.pem");
    let leaf = parse_chain(&std::fs::read_to_string(&cert_path).unwrap())[0].clone();

    let (mut revoke, _) = client_commands::certbot(&certbot, &kiln, client_dir.path(), "revoke");
    revoke.args(["--reason", "superseded"]);
    revoke
        .arg("--cert-path")
        .arg(&cert_path)
        .arg("--no-delete-after-revoke");
    let revoked_at = Instant::now();
    let revoked = run(&client, revoke, client_dir.path(), &logs).await;
    assert!(revoked.status.success(), "{}", revoked.context);
    kiln_tests::relying_party::published(&leaf, revoked_at, Some(4), None).await;
    kiln.shutdown().await;
}

/// lego revokes on a Kiln whose leaves name a public base URL (as a
/// production CA's do); the CRL lints clean under pkilint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_revokes_and_the_crl_lints_clean_on_a_public_base_url() {
    let lego = require_binary("lego", "apt-get install lego");
    let client = version(&lego).await;
    let (data_dir, client_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let http01_port = free_port();
    let public = "http://pki.kiln-revocation.example.com";
    let kiln = start_kiln(data_dir.path(), http01_port, Some(public)).await;
    let name = "revoke.lego.test";
    let lego_command = |action: &[&str]| {
        let mut command =
            client_commands::lego(&lego, &kiln, http01_port, client_dir.path(), &[name]);
        command.args(action);
        command
    };
    let issued = run(&client, lego_command(&["run"]), client_dir.path(), &[]).await;
    assert!(issued.status.success(), "{}", issued.context);
    let bundle = client_dir
        .path()
        .join("certificates")
        .join(format!("{name}.crt"));
    let leaf = parse_chain(&std::fs::read_to_string(&bundle).unwrap())[0].clone();

    let revoked_at = Instant::now();
    let revoke = lego_command(&["revoke", "--keep", "--reason", "5"]);
    let revoked = run(&client, revoke, client_dir.path(), &[]).await;
    assert!(revoked.status.success(), "{}", revoked.context);
    assert_eq!(
        kiln.public_base_url, public,
        "the leaves name the public base"
    );
    let listener = format!(
        "http://{}",
        kiln.public_http_addr.expect("a public listener")
    );
    let crl =
        kiln_tests::relying_party::published(&leaf, revoked_at, Some(5), Some((public, &listener)))
            .await;
    kiln_tests::pkilint::lint_crl_clean(&crl, "the CRL lego's revocation is on");
    kiln.shutdown().await;
}

/// A precertificate is a promise to issue: one whose final certificate was
/// never signed (CT failed here) has revocation status too, and `kiln
/// revoke` puts it on the CRL its precertificate names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precertificate_without_its_final_is_listed_after_kiln_revoke() {
    kiln_tests::cluster::ensure_binaries_built().await;
    let kiln = kiln_tests::TestKiln::start_with(None, |config| {
        config.public_http_listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        config.crl.publish_within_secs = PUBLISH_WITHIN.as_secs();
        config.knobs = Some(Knobs {
            fail: Some(InjectedFailure::Ct),
            ..Knobs::default()
        });
    })
    .await;
    let acme = kiln_tests::acme::Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let order = acme.ready_order(&kiln, &account, &["promise.test"]).await;
    acme.finalize(&account, &order, &kiln_tests::csr_der(&["promise.test"]))
        .await;
    acme.poll_order(&account, &order.url, "invalid").await;
    let serial = kiln
        .kiln
        .store
        .certificates_for_order(order.url.rsplit('/').next().unwrap())
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.precert_der.is_some())
        .expect("a precertificate was signed")
        .serial;
    let revoked_at = Instant::now();
    let out = std::process::Command::new(kiln_tests::cluster::binary("kiln"))
        .args([
            "revoke",
            &serial,
            "--reason",
            "cessationOfOperation",
            "--data-dir",
        ])
        .arg(kiln.data_dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("revoked"), "{said}");
    let cert = kiln.kiln.store.certificate(&serial).await.unwrap().unwrap();
    let precert = X509::from_der(cert.precert_der.as_ref().unwrap()).unwrap();
    kiln_tests::relying_party::published(&precert, revoked_at, Some(5), None).await;
    kiln.kiln.shutdown().await;
}
