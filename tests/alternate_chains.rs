//! Alternate certificate chains (RFC 8555 §7.4.2). With `kiln
//! --alternate-chain` a second root cross-signs the intermediate: the
//! certificate URL links the other chain with `Link: <…/1>;rel="alternate"`,
//! and `…/1` serves the same leaf followed by the cross-signed intermediate,
//! which verifies under the alternate root alone. A raw client checks the
//! protocol; certbot and lego pick the alternate chain with
//! `--preferred-chain "<alternate root's CN>"`, as they would pick a
//! Let's Encrypt chain. Without the flag no chain is linked.
//!
//! The clients are required: if one is missing the test fails (CI installs
//! them in `.ci/run`), it does not skip.

use kiln_tests::acme::{Acme, Reply};
use kiln_tests::clients::{require_binary, run, version};
use kiln_tests::{TestKiln, free_port, parse_chain, serial_hex, verify_chain};
use openssl::x509::{X509, X509NameRef};
use std::path::Path;

use kiln_tests::client_commands;

/// The `rel="alternate"` URLs of a reply's `Link` headers, in order.
fn alternate_links(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|link| {
            let (url, params) = link.trim().split_once(';')?;
            let rel = params.split(';').any(|p| p.trim() == "rel=\"alternate\"");
            let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
            rel.then(|| url.to_string())
        })
        .collect()
}

fn common_name(name: &X509NameRef) -> String {
    let cn = name
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .last()
        .expect("a common name");
    cn.data().to_string().expect("UTF-8")
}

/// What the all-in-one made for its alternate chain, in DATA_DIR/ca.
struct AlternateCa {
    root_pem: String,
    root_name: String,
    cross_signed: X509,
}

fn alternate_ca(data_dir: &Path) -> AlternateCa {
    let ca = data_dir.join("ca");
    let root_pem = std::fs::read_to_string(ca.join("alternate-root.pem")).expect("alternate root");
    let root = X509::from_pem(root_pem.as_bytes()).unwrap();
    let cross = std::fs::read(ca.join("intermediate-cross.pem")).expect("cross-signed");
    AlternateCa {
        root_name: common_name(root.subject_name()),
        root_pem,
        cross_signed: X509::from_pem(&cross).unwrap(),
    }
}

async fn kiln_with_alternate_chain(http01_port: Option<u16>) -> TestKiln {
    TestKiln::start_with(None, |config| {
        config.alternate_chain = true;
        if let Some(port) = http01_port {
            config.http01_port = port;
        }
    })
    .await
}

/// The raw protocol: the default chain links `…/1`, which serves the same
/// leaf with the cross-signed intermediate and links back; that chain
/// verifies under the alternate root and not the default one (and the
/// default chain the other way round); a number with no chain is a 404
/// problem; the alternate is POST-as-GET by the certificate's account only.
#[tokio::test]
async fn the_default_chain_links_an_alternate_that_leads_to_the_second_root() {
    let kiln = kiln_with_alternate_chain(None).await;
    let alternate = alternate_ca(kiln.data_dir.path());
    assert!(
        alternate.root_name.starts_with("Kiln Alternate Root CA "),
        "{}",
        alternate.root_name
    );
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["alt.chains.test"]).await;

    let default = acme.post_as_get(&account, &issued.cert_url).await;
    default.expect_status(200);
    let alternate_url = format!("{}/1", issued.cert_url);
    assert_eq!(
        alternate_links(&default),
        std::slice::from_ref(&alternate_url)
    );
    let default_chain = parse_chain(&default.text);

    let reply = acme.post_as_get(&account, &alternate_url).await;
    reply.expect_status(200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/pem-certificate-chain")
    );
    assert_eq!(
        alternate_links(&reply),
        std::slice::from_ref(&issued.cert_url)
    );
    let chain = parse_chain(&reply.text);
    assert_eq!(
        chain.len(),
        2,
        "the leaf, then the cross-signed intermediate"
    );
    assert_eq!(chain[0].to_der().unwrap(), issued.cert_der, "the same leaf");
    assert_eq!(chain[1], alternate.cross_signed);
    assert_eq!(common_name(chain[1].issuer_name()), alternate.root_name);
    assert_eq!(
        chain[1].subject_name().to_der().unwrap(),
        default_chain[1].subject_name().to_der().unwrap(),
        "the same intermediate, as another root certifies it"
    );

    verify_chain(&chain, &alternate.root_pem).expect("verifies under the alternate root");
    assert!(
        verify_chain(&chain, &kiln.kiln.root_pem).is_err(),
        "the alternate chain does not lead to the default root"
    );
    verify_chain(&default_chain, &kiln.kiln.root_pem).expect("the default chain verifies");
    assert!(verify_chain(&default_chain, &alternate.root_pem).is_err());

    for missing in ["2", "0", "01", "x"] {
        let url = format!("{}/{missing}", issued.cert_url);
        let detail = acme
            .post_as_get(&account, &url)
            .await
            .expect_problem(404, "malformed");
        assert!(detail.contains("alternate chain"), "{missing}: {detail}");
    }
    let stranger = acme.create_account().await;
    acme.post_as_get(&stranger, &alternate_url)
        .await
        .expect_problem(403, "unauthorized");
    acme.post_kid(&account, &alternate_url, Some(&serde_json::json!({})))
        .await
        .expect_problem(400, "malformed");
    kiln.kiln.shutdown().await;
}

/// Without `--alternate-chain` there is no alternate: none linked, `…/1` a
/// 404 — also on a data directory that offered one before, where the files
/// stay for the next start with the flag.
#[tokio::test]
async fn without_the_flag_no_alternate_is_linked() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["plain.chains.test"]).await;
    let default = acme.post_as_get(&account, &issued.cert_url).await;
    default.expect_status(200);
    assert!(
        alternate_links(&default).is_empty(),
        "{:?}",
        default.headers
    );
    assert!(
        default.header("link").is_some(),
        "the other links are there"
    );
    acme.post_as_get(&account, &format!("{}/1", issued.cert_url))
        .await
        .expect_problem(404, "malformed");
    assert!(
        !kiln
            .data_dir
            .path()
            .join("ca/intermediate-cross.pem")
            .exists()
    );
    kiln.kiln.shutdown().await;

    // Offered once, then started without the flag: the issuer's record
    // loses its alternate, and gets it back with the flag.
    let port = free_port();
    let kiln = TestKiln::start_with(None, |config| {
        config.alternate_chain = true;
        config.listen.set_port(port);
    })
    .await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["again.chains.test"]).await;
    let TestKiln {
        kiln: running,
        data_dir,
        ..
    } = kiln;
    running.shutdown().await;
    let plain = TestKiln::start_at(data_dir.path(), port, None).await;
    let default = acme.post_as_get(&account, &issued.cert_url).await;
    default.expect_status(200);
    assert!(
        alternate_links(&default).is_empty(),
        "{:?}",
        default.headers
    );
    plain.kiln.shutdown().await;
    let offering = TestKiln::start_with(None, |config| {
        config.data_dir = data_dir.path().to_path_buf();
        config.alternate_chain = true;
        config.listen.set_port(port);
    })
    .await;
    let default = acme.post_as_get(&account, &issued.cert_url).await;
    assert_eq!(
        alternate_links(&default),
        [format!("{}/1", issued.cert_url)]
    );
    offering.kiln.shutdown().await;
}

/// The chain a client wrote (everything after the leaf) is the alternate
/// one: its top certificate is the cross-signed intermediate, issued by the
/// alternate root, and the whole verifies under that root alone.
async fn check_alternate_chain(
    kiln: &TestKiln,
    alternate: &AlternateCa,
    leaf_path: &Path,
    chain_path: &Path,
    context: &str,
) {
    let read = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "the client did not write {}: {e}\n{context}",
                path.display()
            )
        })
    };
    let leaf = parse_chain(&read(leaf_path))[0].clone();
    let chain = parse_chain(&read(chain_path));
    let top = chain.last().expect("a chain");
    assert_eq!(
        *top, alternate.cross_signed,
        "the alternate chain\n{context}"
    );
    assert_eq!(common_name(top.issuer_name()), alternate.root_name);
    let full: Vec<X509> = std::iter::once(leaf.clone()).chain(chain).collect();
    verify_chain(&full, &alternate.root_pem)
        .unwrap_or_else(|e| panic!("not verified by the alternate root: {e}\n{context}"));
    let record = kiln
        .kiln
        .store
        .certificate(&serial_hex(&leaf))
        .await
        .unwrap()
        .expect("Kiln issued the client's leaf");
    assert_eq!(record.final_der, Some(leaf.to_der().unwrap()));
}

#[tokio::test]
async fn certbot_gets_the_alternate_chain_it_prefers() {
    let certbot = require_binary(
        "certbot",
        "install the PyPI package `certbot` (pip install certbot)",
    );
    let client = version(&certbot).await;
    let http01_port = free_port();
    let kiln = kiln_with_alternate_chain(Some(http01_port)).await;
    let alternate = alternate_ca(kiln.data_dir.path());
    let client_dir = tempfile::tempdir().expect("temp dir");
    let name = "certbot.chains.test";
    let (mut command, dirs) = client_commands::certbot_certonly(
        &certbot,
        &kiln.kiln,
        http01_port,
        client_dir.path(),
        &[name],
    );
    command.args(["--preferred-chain", &alternate.root_name]);
    let outcome = run(&client, command, client_dir.path(), &dirs.log_files()).await;
    assert!(outcome.status.success(), "{}", outcome.context);
    let live = dirs.live(name);
    check_alternate_chain(
        &kiln,
        &alternate,
        &live.join("cert.pem"),
        &live.join("chain.pem"),
        &outcome.context,
    )
    .await;
    kiln.kiln.shutdown().await;
}

#[tokio::test]
async fn lego_gets_the_alternate_chain_it_prefers() {
    let lego = require_binary(
        "lego",
        "install the Debian package `lego` (apt-get install lego)",
    );
    let client = version(&lego).await;
    let http01_port = free_port();
    let kiln = kiln_with_alternate_chain(Some(http01_port)).await;
    let alternate = alternate_ca(kiln.data_dir.path());
    let client_dir = tempfile::tempdir().expect("temp dir");
    let name = "lego.chains.test";
    let mut command =
        client_commands::lego(&lego, &kiln.kiln, http01_port, client_dir.path(), &[name]);
    command
        .arg("run")
        .args(["--preferred-chain", &alternate.root_name]);
    let outcome = run(&client, command, client_dir.path(), &[]).await;
    assert!(outcome.status.success(), "{}", outcome.context);
    let (cert, issuer) = client_commands::lego_certificate(client_dir.path(), name);
    check_alternate_chain(&kiln, &alternate, &cert, &issuer, &outcome.context).await;
    kiln.kiln.shutdown().await;
}
