//! `[signer.pkcs11]`: the intermediate's key on a PKCS#11 token (SoftHSM
//! here). The signer's load refuses, naming token and label, what would
//! not sign for intermediate.pem; the leaves it signs on the token verify
//! under the intermediate, for OpenSSL too. No intermediate-key.pem exists.

mod fixtures;
mod softhsm;

use std::path::Path;
use std::process::Command;

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509;
use signer::ca::{CaError, IssuingCa, Pkcs11Source};
use signer::certificate::{LeafRequest, Profile, final_certificate_der, precertificate_der};
use softhsm::{KEY, MODULE, hsm};

fn profile() -> Profile {
    Profile::new("http://kiln.test/ca/int.der", "http://kiln.test/ca/crl")
}

fn request(serial: u8) -> LeafRequest {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (not_before, not_after) = profile().validity_window(now);
    LeafRequest {
        serial: vec![0x01, serial, 0x42],
        dns_names: vec![format!("host{serial}.example.com")],
        ip_addresses: vec![],
        public_key_der: key.public_key_to_der().unwrap(),
        not_before,
        not_after,
    }
}

/// The precertificate and the final certificate for `serial`, both
/// checked to verify under the intermediate's public key.
fn issue(ca: &IssuingCa, serial: u8) -> Vec<u8> {
    let intermediate_key = ca.intermediate.cert.public_key().unwrap();
    let precert = precertificate_der(&ca.intermediate, &request(serial), &profile()).unwrap();
    let parsed = X509::from_der(&precert).unwrap();
    assert!(parsed.verify(&intermediate_key).unwrap(), "precertificate");
    let der =
        final_certificate_der(&ca.intermediate, &precert, &fixtures::sct_list_extension()).unwrap();
    assert!(
        X509::from_der(&der)
            .unwrap()
            .verify(&intermediate_key)
            .unwrap()
    );
    der
}

/// `openssl verify` of the chain root → intermediate → `leaf`.
fn openssl_verifies(ca_dir: &Path, leaf: &[u8]) {
    let file = hsm().dir.path().join(format!("leaf-{}.pem", leaf.len()));
    let pem = X509::from_der(leaf).unwrap().to_pem().unwrap();
    std::fs::write(&file, pem).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca_dir.join("root.pem"))
        .arg("-untrusted")
        .arg(ca_dir.join("intermediate.pem"))
        .arg(&file)
        .output()
        .expect("openssl runs");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains(": OK"), "{said}");
}

fn refusal(ca_dir: &Path, source: &Pkcs11Source) -> String {
    match IssuingCa::load_with_token(ca_dir, source) {
        Ok(_) => panic!("{source:?} was loaded"),
        Err(e) => e.to_string(),
    }
}

/// Signatures from tasks of a multi-threaded runtime, more at once than the
/// two sessions: each waits for a session, none is lost or mixed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_signed_on_the_token_verify_under_the_intermediate() {
    let hsm = hsm();
    assert!(!hsm.ec_ca.join("intermediate-key.pem").exists());
    let ca = IssuingCa::load_with_token(&hsm.ec_ca, &hsm.source("good", KEY)).unwrap();
    assert!(ca.intermediate.key.is_none(), "the key stays on the token");
    // Login is the process's, not a session's: a second load, even with a
    // wrong PIN, would find the token open; it is refused instead.
    let again = Pkcs11Source {
        pin_file: hsm.wrong_pin.clone(),
        ..hsm.source("good", KEY)
    };
    let said = refusal(&hsm.ec_ca, &again);
    assert!(said.contains("logged in to the token already"), "{said}");
    let mut tasks = tokio::task::JoinSet::new();
    for serial in 1..=6 {
        let ca = ca.clone();
        tasks.spawn(async move { issue(&ca, serial) });
    }
    let mut leaves = Vec::new();
    while let Some(leaf) = tasks.join_next().await {
        leaves.push(leaf.unwrap());
    }
    assert_eq!(leaves.len(), 6);
    openssl_verifies(&hsm.ec_ca, &leaves[0]);
    // The store's record of the issuer is the same as with a key file.
    assert_eq!(ca.issuer_record().unwrap().id, ca.intermediate.id());
}

#[test]
fn an_rsa_key_on_the_token_signs_too() {
    let hsm = hsm();
    let ca = IssuingCa::load_with_token(&hsm.rsa_ca, &hsm.source("rsa", KEY)).unwrap();
    let leaf = issue(&ca, 7);
    let cert = X509::from_der(&leaf).unwrap();
    assert_eq!(
        cert.signature_algorithm().object().nid(),
        Nid::SHA256WITHRSAENCRYPTION
    );
    openssl_verifies(&hsm.rsa_ca, &leaf);
}

/// The operator's config, through `[signer.pkcs11]`, to a loaded CA.
#[test]
fn the_config_names_the_token() {
    let hsm = hsm();
    let file = hsm.dir.path().join("signer.toml");
    let text = format!(
        "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n[signer]\n\
         ca_dir = {:?}\n[signer.pkcs11]\nmodule = {MODULE:?}\ntoken_label = \"config\"\n\
         key_label = {KEY:?}\npin_file = {:?}\nsessions = 1\n",
        hsm.ec_ca, hsm.pin
    );
    std::fs::write(&file, text).unwrap();
    let (_, config) =
        service::config::load::<signer::config::SignerConfig>(Some(&file), "signer").unwrap();
    let ca = config.load_ca().unwrap();
    issue(&ca, 8);
    // Without the table, the key file is wanted, and missing here.
    let config = signer::config::SignerConfig {
        pkcs11: None,
        ..config
    };
    assert!(
        matches!(config.load_ca(), Err(CaError::Incomplete(p)) if p.ends_with("intermediate-key.pem"))
    );
}

#[test]
fn a_wrong_pin_is_refused() {
    let hsm = hsm();
    let source = Pkcs11Source {
        pin_file: hsm.wrong_pin.clone(),
        ..hsm.source("pin", KEY)
    };
    let said = refusal(&hsm.ec_ca, &source);
    assert!(said.contains("\"pin\"") && said.contains(KEY), "{said}");
    assert!(said.contains("PIN") && said.contains("wrong"), "{said}");
}

#[test]
fn a_pin_file_others_can_read_is_refused() {
    let hsm = hsm();
    let source = Pkcs11Source {
        pin_file: hsm.loose_pin.clone(),
        ..hsm.source("good", KEY)
    };
    match IssuingCa::load_with_token(&hsm.ec_ca, &source) {
        Err(CaError::LooseKey { path, mode }) => {
            assert_eq!((path, mode), (hsm.loose_pin.clone(), 0o644));
        }
        other => panic!("{other:?}"),
    }
    let source = Pkcs11Source {
        pin_file: hsm.dir.path().join("no-such-pin"),
        ..hsm.source("good", KEY)
    };
    let said = refusal(&hsm.ec_ca, &source);
    assert!(
        said.contains("no-such-pin") && said.contains("missing"),
        "{said}"
    );
}

#[test]
fn an_absent_key_label_is_refused() {
    let hsm = hsm();
    let said = refusal(&hsm.ec_ca, &hsm.source("unlabelled", KEY));
    assert!(
        said.contains("\"unlabelled\"") && said.contains(KEY),
        "{said}"
    );
    assert!(said.contains("no private key with this label"), "{said}");
}

#[test]
fn an_absent_token_or_module_is_refused() {
    let hsm = hsm();
    let said = refusal(&hsm.ec_ca, &hsm.source("no-such-token", KEY));
    assert!(
        said.contains("\"no-such-token\"") && said.contains("no such token"),
        "{said}"
    );
    assert!(
        said.contains("\"good\""),
        "the tokens there are named: {said}"
    );
    let source = Pkcs11Source {
        module: "/nonexistent/libpkcs11.so".into(),
        ..hsm.source("good", KEY)
    };
    let said = refusal(&hsm.ec_ca, &source);
    assert!(said.contains("/nonexistent/libpkcs11.so"), "{said}");
}

/// Another key under the right label: seen by the public key the token
/// shows, or, with none shown, by a signature that does not verify.
#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let hsm = hsm();
    let said = refusal(&hsm.ec_ca, &hsm.source("stranger", KEY));
    assert!(
        said.contains("\"stranger\"") && said.contains(KEY),
        "{said}"
    );
    assert!(said.contains("not the key of intermediate.pem"), "{said}");
    let said = refusal(&hsm.ec_ca, &hsm.source("stranger-private", KEY));
    assert!(
        said.contains("\"stranger-private\"") && said.contains(KEY),
        "{said}"
    );
    assert!(
        said.contains("do not verify under the certificate"),
        "{said}"
    );
    // The EC key for the RSA certificate.
    let said = refusal(&hsm.rsa_ca, &hsm.source("ec-for-rsa", KEY));
    assert!(said.contains("\"ec-for-rsa\""), "{said}");
}

/// The signer stage itself, its key on the token: an order from
/// sign-precert to valid, the certificate served verifying to the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signer_stage_issues_with_the_token_key() {
    use domain::OrderStatus;
    use proto::Job;
    use queue::Handler;
    use store::{Store, now_ms};

    let hsm = hsm();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let signer = signer::Signer {
        store: store.clone(),
        ca: IssuingCa::load_with_token(&hsm.ec_ca, &hsm.source("order", KEY)).unwrap(),
        profile: profile(),
        serial_prefix: 0x01,
        crl: signer::crls::CrlConfig::default(),
        step_timeout: std::time::Duration::from_secs(30),
    };
    signer.record_issuer().await.unwrap();

    let id = "ord1";
    fixtures::insert_account(&store).await;
    fixtures::order_at_sign_precert(&store, id).await;
    let deadline = now_ms() + 30_000;

    let job = |order_id: &str| Job::SignPrecert {
        order_id: order_id.into(),
    };
    let next = signer.handle(&job(id), 1).await.unwrap();
    assert_eq!(
        next,
        [Job::SubmitCt {
            order_id: id.into()
        }]
    );
    // The ct-submitter's part: SCTs stored for the serial.
    let serial = store
        .order(id)
        .await
        .unwrap()
        .unwrap()
        .certificate_serial
        .unwrap();
    store
        .store_scts(id, &serial, &fixtures::sct_list_extension(), deadline)
        .await
        .unwrap();
    let next = signer
        .handle(
            &Job::SignFinal {
                order_id: id.into(),
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        next,
        [Job::SubmitFinal {
            order_id: id.into()
        }]
    );

    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Valid, "{order:?}");
    let record = store.certificate(&serial).await.unwrap().unwrap();
    let leaf = record.final_der.expect("a final certificate");
    let intermediate_key = hsm_intermediate_key(hsm);
    assert!(
        X509::from_der(&leaf)
            .unwrap()
            .verify(&intermediate_key)
            .unwrap()
    );
    openssl_verifies(&hsm.ec_ca, &leaf);
}

fn hsm_intermediate_key(hsm: &softhsm::Hsm) -> PKey<openssl::pkey::Public> {
    let pem = std::fs::read(hsm.ec_ca.join("intermediate.pem")).unwrap();
    X509::from_pem(&pem).unwrap().public_key().unwrap()
}
