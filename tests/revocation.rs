//! Revocation that relying parties can see: real clients (certbot, lego)
//! revoke, and a relying party that knows nothing but the leaf — its CRL
//! DP and its AIA, fetched over plain HTTP — finds the serial on a CRL the
//! issuer signed, within the configured bound. A precertificate whose final
//! certificate was never signed is listed once the operator revokes it
//! (`kiln revoke`), and the served CRLs lint clean under pkilint on a public
//! base URL.

use kiln::knobs::{InjectedFailure, Knobs};
use kiln::{EmbeddedConfig, Kiln};
use kiln_tests::clients::{require_binary, run, version};
use kiln_tests::{free_port, parse_chain, serial_hex};
use openssl::x509::{X509, X509Crl};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::Command;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// The bound these tests configure: a revocation is on the served CRL
/// within it (the updater looks four times per bound).
const PUBLISH_WITHIN: Duration = Duration::from_secs(2);
/// What a loaded CI machine may add to the bound (a poll, a commit).
const SLACK: Duration = Duration::from_secs(3);

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

/// A leaf's CRL DP and AIA caIssuers URLs.
fn leaf_urls(leaf: &X509) -> (String, String) {
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
async fn published(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_revokes_and_the_crl_in_the_leaf_lists_it() {
    let certbot = require_binary("certbot", "pip install certbot");
    let client = version(&certbot).await;
    let (data_dir, client_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let http01_port = free_port();
    let kiln = start_kiln(data_dir.path(), http01_port, None).await;
    let name = "revoke.certbot.test";
    let (config_dir, work_dir, logs_dir) = (
        client_dir.path().join("config"),
        client_dir.path().join("work"),
        client_dir.path().join("logs"),
    );
    let certbot_command = |args: &[&str]| {
        let mut command = Command::new(&certbot);
        command
            .env("REQUESTS_CA_BUNDLE", &kiln.root_pem_path)
            .env("XDG_CONFIG_HOME", client_dir.path())
            .args(args)
            .args(["--non-interactive", "--server", &kiln.directory_url])
            .arg("--config-dir")
            .arg(&config_dir)
            .arg("--work-dir")
            .arg(&work_dir)
            .arg("--logs-dir")
            .arg(&logs_dir);
        command
    };
    let logs = [logs_dir.join("letsencrypt.log")];
    let mut issue = certbot_command(&["certonly", "--agree-tos", "-m", "x@certbot.test"]);
    issue
        .args([
            "--no-eff-email",
            "--standalone",
            "--preferred-challenges",
            "http",
        ])
        .args([
            "--http-01-port",
            &http01_port.to_string(),
            "--http-01-address",
            "127.0.0.1",
        ])
        .args(["-d", name]);
    let issued = run(&client, issue, client_dir.path(), &logs).await;
    assert!(issued.status.success(), "{}", issued.context);
    let cert_path = config_dir.join("live").join(name).join("cert.pem");
    let leaf = parse_chain(&std::fs::read_to_string(&cert_path).unwrap())[0].clone();

    let mut revoke = certbot_command(&["revoke", "--reason", "superseded"]);
    revoke
        .arg("--cert-path")
        .arg(&cert_path)
        .arg("--no-delete-after-revoke");
    let revoked_at = Instant::now();
    let revoked = run(&client, revoke, client_dir.path(), &logs).await;
    assert!(revoked.status.success(), "{}", revoked.context);
    published(&leaf, revoked_at, Some(4), None).await;
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
        let mut command = Command::new(&lego);
        command
            .env("LEGO_CA_CERTIFICATES", &kiln.root_pem_path)
            .args(["--server", &kiln.directory_url, "--accept-tos"])
            .args(["--email", "x@lego.test", "--domains", name])
            .arg("--path")
            .arg(client_dir.path())
            .args(["--http", "--http.port", &format!("127.0.0.1:{http01_port}")])
            .args(action);
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
    let crl = published(&leaf, revoked_at, Some(5), Some((public, &listener))).await;
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
    published(&precert, revoked_at, Some(5), None).await;
    kiln.kiln.shutdown().await;
}
