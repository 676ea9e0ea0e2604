//! Black-box tests of External Account Binding (RFC 8555 §7.3.4) against
//! `kiln --external-account-required`: the directory says so; instant-acme
//! creates an account with a key from the store (as `kiln eab create`
//! makes one); a newAccount without a binding, with a wrong HMAC, or with a
//! revoked, unknown or already bound key is refused with the right ACME
//! type; of two racing newAccounts with one key exactly one gets an
//! account. Hand-built bindings check the header rules. Loopback only.

use api::jws::jwk_of;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use kiln_tests::TestKiln;
use kiln_tests::acme::{Acme, Reply, b64, p256};
use kiln_tests::clients::{require_binary, run, version};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_json::{Value, json};
use store::{EabKey, now_ms};

// Only lego's command line: eab runs no certbot.
use kiln_tests::client_commands;

const PROBLEM: &str = "urn:ietf:params:acme:error:";

async fn start() -> TestKiln {
    TestKiln::start_with(None, |config| config.external_account_required = true).await
}

/// A fresh usable key in the Kiln's store, as `kiln eab create` adds it.
async fn eab_key(kiln: &TestKiln, key_id: &str) -> Vec<u8> {
    let hmac: Vec<u8> = (0..32u8).map(|i| i ^ key_id.len() as u8).collect();
    let key = EabKey::new(key_id.into(), hmac.clone(), "test".into(), now_ms());
    assert!(kiln.kiln.store.create_eab_key(&key).await.unwrap());
    hmac
}

async fn create(
    kiln: &TestKiln,
    eab: Option<&ExternalAccountKey>,
) -> Result<(Account, AccountCredentials), instant_acme::Error> {
    Account::builder_with_root(&kiln.kiln.root_pem_path)
        .expect("instant-acme builder")
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            kiln.directory_url(),
            eab,
        )
        .await
}

fn problem_type(result: Result<(Account, AccountCredentials), instant_acme::Error>) -> String {
    match result {
        Err(instant_acme::Error::Api(problem)) => problem.r#type.unwrap_or_default(),
        Err(other) => panic!("expected an ACME problem, got {other}"),
        Ok((account, _)) => panic!("expected a refusal, got account {}", account.id()),
    }
}

async fn bound_account(kiln: &TestKiln, key_id: &str) -> Option<String> {
    let key = kiln.kiln.store.eab_key(key_id).await.unwrap().unwrap();
    key.account_id
}

#[tokio::test]
async fn the_directory_says_external_account_required() {
    let kiln = start().await;
    let acme = Acme::connect(&kiln).await;
    assert_eq!(acme.directory["meta"]["externalAccountRequired"], true);
}

#[tokio::test]
async fn instant_acme_creates_an_account_bound_to_its_key() {
    let kiln = start().await;
    let hmac = eab_key(&kiln, "kid-1").await;
    let eab = ExternalAccountKey::new("kid-1".into(), &hmac);
    let (account, _) = create(&kiln, Some(&eab)).await.expect("account with EAB");
    let bound = bound_account(&kiln, "kid-1").await.expect("key bound");
    assert!(
        account.id().ends_with(&format!("/{bound}")),
        "{} vs {bound}",
        account.id()
    );
    // The key binds one account: a second client with it is refused.
    let again = create(&kiln, Some(&eab)).await;
    assert_eq!(problem_type(again), format!("{PROBLEM}unauthorized"));
}

#[tokio::test]
async fn without_a_binding_the_account_is_refused() {
    let kiln = start().await;
    assert_eq!(
        problem_type(create(&kiln, None).await),
        format!("{PROBLEM}externalAccountRequired")
    );
}

#[tokio::test]
async fn a_wrong_hmac_an_unknown_or_revoked_key_is_refused() {
    let kiln = start().await;
    eab_key(&kiln, "kid-1").await;
    let wrong = ExternalAccountKey::new("kid-1".into(), &[0x55; 32]);
    assert_eq!(
        problem_type(create(&kiln, Some(&wrong)).await),
        format!("{PROBLEM}unauthorized")
    );
    assert_eq!(bound_account(&kiln, "kid-1").await, None, "still free");

    let unknown = ExternalAccountKey::new("no-such-kid".into(), &[0x55; 32]);
    assert_eq!(
        problem_type(create(&kiln, Some(&unknown)).await),
        format!("{PROBLEM}unauthorized")
    );

    let hmac = eab_key(&kiln, "kid-22").await;
    assert!(
        kiln.kiln
            .store
            .revoke_eab_key("kid-22", now_ms())
            .await
            .unwrap()
    );
    let revoked = ExternalAccountKey::new("kid-22".into(), &hmac);
    assert_eq!(
        problem_type(create(&kiln, Some(&revoked)).await),
        format!("{PROBLEM}unauthorized")
    );
    assert_eq!(bound_account(&kiln, "kid-22").await, None);
}

#[tokio::test]
async fn of_two_racing_new_accounts_with_one_key_one_succeeds() {
    let kiln = start().await;
    let hmac = eab_key(&kiln, "kid-race").await;
    let eab = ExternalAccountKey::new("kid-race".into(), &hmac);
    let eab2 = ExternalAccountKey::new("kid-race".into(), &hmac);
    let (a, b) = tokio::join!(create(&kiln, Some(&eab)), create(&kiln, Some(&eab2)));
    let (winner, loser) = match (a, b) {
        (Ok(w), l @ Err(_)) | (l @ Err(_), Ok(w)) => (w.0, l),
        (a, b) => panic!("expected one success: {:?} / {:?}", a.is_ok(), b.is_ok()),
    };
    assert_eq!(problem_type(loser), format!("{PROBLEM}unauthorized"));
    let bound = bound_account(&kiln, "kid-race").await.expect("bound");
    assert!(winner.id().ends_with(&format!("/{bound}")));
}

// ---- hand-built bindings ------------------------------------------------

/// A binding with protected header `header` over `payload` (JSON text, sent
/// as is), its HMAC made with `hmac` and `digest` whatever `alg` says.
fn binding(hmac: &[u8], header: Value, payload: &str, digest: MessageDigest) -> Value {
    let protected = b64(header.to_string().as_bytes());
    let payload = b64(payload.as_bytes());
    let pkey = PKey::hmac(hmac).unwrap();
    let mut signer = Signer::new(digest, &pkey).unwrap();
    signer
        .update(format!("{protected}.{payload}").as_bytes())
        .unwrap();
    let signature = signer.sign_to_vec().unwrap();
    json!({"protected": protected, "payload": payload, "signature": b64(&signature)})
}

async fn new_account_with(acme: &Acme, key: &PKey<Private>, eab: Value) -> Reply {
    let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab});
    acme.new_account_reply(key, &payload).await
}

#[tokio::test]
async fn hand_built_bindings_follow_the_header_rules() {
    let kiln = start().await;
    let acme = Acme::connect(&kiln).await;
    let hmac = eab_key(&kiln, "kid-h").await;
    let url = acme.resource("newAccount");
    let key = p256();
    let jwk = jwk_of(&key).to_string();
    let header = |alg: &str| json!({"alg": alg, "kid": "kid-h", "url": url});
    let sha256 = MessageDigest::sha256;

    let cases = [
        (
            "ES256 is no HMAC",
            binding(&hmac, header("ES256"), &jwk, sha256()),
            400,
            "malformed",
        ),
        (
            "a nonce is forbidden",
            binding(
                &hmac,
                json!({"alg": "HS256", "kid": "kid-h", "url": url, "nonce": "abc"}),
                &jwk,
                sha256(),
            ),
            400,
            "malformed",
        ),
        (
            "url must be newAccount's",
            binding(
                &hmac,
                json!({"alg": "HS256", "kid": "kid-h", "url": acme.url("/x")}),
                &jwk,
                sha256(),
            ),
            400,
            "malformed",
        ),
        (
            "the payload must be the account key",
            binding(
                &hmac,
                header("HS256"),
                &jwk_of(&p256()).to_string(),
                sha256(),
            ),
            400,
            "malformed",
        ),
        ("not a JWS", json!("eab"), 400, "malformed"),
        (
            "HS384 under an HS256 header",
            binding(&hmac, header("HS256"), &jwk, MessageDigest::sha384()),
            403,
            "unauthorized",
        ),
    ];
    for (why, eab, status, kind) in cases {
        let reply = new_account_with(&acme, &key, eab).await;
        assert_eq!(reply.status, status, "{why}: {}", reply.text);
        assert_eq!(
            reply.body["type"],
            format!("{PROBLEM}{kind}"),
            "{why}: {}",
            reply.text
        );
    }
    assert_eq!(
        bound_account(&kiln, "kid-h").await,
        None,
        "no case bound the key"
    );

    // HS512, and the JWK with its members in another order (parsed, not
    // compared as bytes).
    let value: Value = serde_json::from_str(&jwk).unwrap();
    let mut members: Vec<String> = value
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k:?} : {v}"))
        .collect();
    members.reverse();
    let reordered = format!("{{ {} }}", members.join(", "));
    assert_ne!(reordered, jwk);
    let eab = binding(&hmac, header("HS512"), &reordered, MessageDigest::sha512());
    let reply = new_account_with(&acme, &key, eab).await;
    reply.expect_status(201);
    let account_url = reply.location();
    let bound = bound_account(&kiln, "kid-h").await.expect("bound");
    assert!(account_url.ends_with(&format!("/{bound}")));

    // The existing account is found by its key with no binding again.
    let reply = acme
        .new_account_reply(&key, &json!({"onlyReturnExisting": true}))
        .await;
    reply.expect_status(200);
    assert_eq!(reply.location(), account_url);
    let reply = acme
        .new_account_reply(&key, &json!({"termsOfServiceAgreed": true}))
        .await;
    reply.expect_status(200);
}

#[tokio::test]
async fn a_binding_is_checked_and_bound_even_when_not_required() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    assert_eq!(acme.directory["meta"]["externalAccountRequired"], false);
    let hmac = eab_key(&kiln, "kid-opt").await;
    let wrong = ExternalAccountKey::new("kid-opt".into(), &[1; 32]);
    assert_eq!(
        problem_type(create(&kiln, Some(&wrong)).await),
        format!("{PROBLEM}unauthorized")
    );
    let right = ExternalAccountKey::new("kid-opt".into(), &hmac);
    let (account, _) = create(&kiln, Some(&right)).await.expect("account");
    let bound = bound_account(&kiln, "kid-opt").await.expect("bound");
    assert!(account.id().ends_with(&format!("/{bound}")));
    let _unbound = create(&kiln, None).await.expect("no binding needed here");
}

// ---- a real client ------------------------------------------------------

/// lego (`--eab --kid --hmac`) gets a certificate from a Kiln that requires
/// EAB; without the flags it sees the directory's `externalAccountRequired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_gets_a_certificate_with_eab() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let http01_port = kiln_tests::free_port();
    let mut config = kiln::EmbeddedConfig::new(data_dir.path());
    config.listen = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    config.dns_server = None;
    config.http01_port = http01_port;
    config.tlsalpn01_port = kiln_tests::free_port();
    config.external_account_required = true;
    let kiln = kiln::Kiln::start(config).await.expect("kiln starts");
    let hmac = [0x42u8; 32];
    let key = EabKey::new("lego-kid".into(), hmac.to_vec(), "lego".into(), now_ms());
    kiln.store.create_eab_key(&key).await.unwrap();

    let lego = require_binary("lego", "apt-get install lego");
    let client = version(&lego).await;
    let lego_command = |client_dir: &std::path::Path, eab: bool| {
        let names = ["lego.eab.test"];
        let mut command = client_commands::lego(&lego, &kiln, http01_port, client_dir, &names);
        if eab {
            command.args(["--eab", "--kid", "lego-kid", "--hmac", &b64(&hmac)]);
        }
        command.arg("run");
        command
    };

    let without = tempfile::tempdir().unwrap();
    let command = lego_command(without.path(), false);
    let outcome = run(&client, command, without.path(), &[]).await;
    assert!(
        !outcome.status.success(),
        "lego without EAB succeeded:\n{}",
        outcome.context
    );
    // lego reads meta.externalAccountRequired and stops before newAccount.
    assert!(
        outcome
            .context
            .contains("requires External Account Binding"),
        "{}",
        outcome.context
    );

    let with = tempfile::tempdir().unwrap();
    let command = lego_command(with.path(), true);
    let outcome = run(&client, command, with.path(), &[]).await;
    assert!(
        outcome.status.success(),
        "lego with EAB failed:\n{}",
        outcome.context
    );
    let (cert, _) = client_commands::lego_certificate(with.path(), "lego.eab.test");
    assert!(
        cert.exists(),
        "no certificate written:\n{}",
        outcome.context
    );
    let bound = kiln.store.eab_key("lego-kid").await.unwrap().unwrap();
    assert!(bound.account_id.is_some(), "the key bound lego's account");
    kiln.shutdown().await;
}
