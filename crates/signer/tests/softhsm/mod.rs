//! A SoftHSM token directory for the PKCS#11 tests, made once per test
//! binary: the library reads `SOFTHSM2_CONF` once, when the first load
//! initializes it, so every token is made before any test loads one.
//! `softhsm2-util` (Debian's `softhsm2`) must be installed: without it the
//! tests fail, they do not skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name};
use signer::ca::{CaHierarchy, Issuer, Pkcs11Source};
use std::os::unix::fs::PermissionsExt;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "kiln-user-1234";
const SO_PIN: &str = "kiln-so-5678";
/// The label every test key has, unless a test says otherwise.
pub const KEY: &str = "kiln-intermediate";

pub struct Hsm {
    pub dir: tempfile::TempDir,
    /// root.pem and intermediate.pem (P-256), no key file.
    pub ec_ca: PathBuf,
    /// root.pem and an RSA-2048 intermediate.pem, no key file.
    pub rsa_ca: PathBuf,
    /// Owner-only files: the right PIN, a wrong one; the right one readable
    /// by all.
    pub pin: PathBuf,
    pub wrong_pin: PathBuf,
    pub loose_pin: PathBuf,
}

impl Hsm {
    /// `[signer.pkcs11]` for `token` and `key`, with the right PIN.
    pub fn source(&self, token: &str, key: &str) -> Pkcs11Source {
        Pkcs11Source {
            module: MODULE.into(),
            token_label: token.into(),
            key_label: key.into(),
            pin_file: self.pin.clone(),
            sessions: 2,
        }
    }
}

/// The tokens: `good`, `config`, `order`, `ec-for-rsa`, `pin` and `unlabelled` hold
/// the EC intermediate's key (the last under another label), `stranger`
/// another P-256 key pair, `stranger-private` another private key alone,
/// `rsa` the RSA intermediate's key. A token is logged in to by one test
/// only: login is the process's, and a second one is refused.
pub fn hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(make)
}

fn make() -> Hsm {
    assert!(
        Path::new(MODULE).exists(),
        "{MODULE} is missing: install Debian's softhsm2"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    let text = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        tokens.display()
    );
    std::fs::write(&conf, text).unwrap();
    // SAFETY: every test calls `hsm()` first and waits here for this one
    // initialization; no other thread of this binary reads the environment
    // meanwhile, and the library reads this variable only after.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };

    let ca = CaHierarchy::generate().unwrap();
    let ec_ca = dir.path().join("ec-ca");
    write_ca(&ec_ca, &ca.root.cert, &ca.intermediate.cert);
    let ec_key = pem_file(
        dir.path(),
        "ec-key.pem",
        ca.intermediate.key.as_ref().unwrap(),
    );
    let (rsa_cert, rsa_key) = rsa_intermediate(&ca.root);
    let rsa_ca = dir.path().join("rsa-ca");
    write_ca(&rsa_ca, &ca.root.cert, &rsa_cert);
    let rsa_key = pem_file(dir.path(), "rsa-key.pem", &rsa_key);
    let stranger = pem_file(dir.path(), "stranger.pem", &p256());

    for (token, key, label) in [
        ("good", &ec_key, KEY),
        ("config", &ec_key, KEY),
        ("order", &ec_key, KEY),
        ("ec-for-rsa", &ec_key, KEY),
        ("pin", &ec_key, KEY),
        ("unlabelled", &ec_key, "someone-else"),
        ("stranger", &stranger, KEY),
        ("rsa", &rsa_key, KEY),
    ] {
        util(&["--init-token", "--free", "--label", token]);
        util(&[
            "--import",
            path(key),
            "--token",
            token,
            "--label",
            label,
            "--id",
            "01",
        ]);
    }
    util(&["--init-token", "--free", "--label", "stranger-private"]);
    private_key_only("stranger-private", &p256());

    let secret = |name: &str, text: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    Hsm {
        pin: secret("pin", &format!("{PIN}\n"), 0o600),
        wrong_pin: secret("wrong-pin", "not-the-pin\n", 0o600),
        loose_pin: secret("loose-pin", PIN, 0o644),
        ec_ca,
        rsa_ca,
        dir,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `softhsm2-util` with the user and SO PINs, which must succeed.
fn util(args: &[&str]) {
    let out = Command::new("softhsm2-util")
        .args(args)
        .args(["--so-pin", SO_PIN, "--pin", PIN])
        .output()
        .expect("softhsm2-util runs: install Debian's softhsm2 (CI's .ci/run does)");
    assert!(
        out.status.success(),
        "softhsm2-util {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `key` on `token` as a private key object with no public key object
/// beside it, as some HSMs keep keys: only a signature can tell whose it is.
fn private_key_only(token: &str, key: &PKey<Private>) {
    let ctx = Pkcs11::new(MODULE).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == token)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .unwrap();
    let ec = key.ec_key().unwrap();
    // prime256v1's OID, as CKA_EC_PARAMS carries a named curve.
    let params = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    session
        .create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
            Attribute::Label(KEY.as_bytes().to_vec()),
            Attribute::EcParams(params),
            Attribute::Value(ec.private_key().to_vec_padded(32).unwrap()),
        ])
        .unwrap();
    // Closing the last session logs the token out: the signer logs in anew.
    drop(session);
    ctx.finalize().unwrap();
}

fn write_ca(dir: &Path, root: &X509, intermediate: &X509) {
    std::fs::create_dir(dir).unwrap();
    std::fs::write(dir.join("root.pem"), root.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("intermediate.pem"), intermediate.to_pem().unwrap()).unwrap();
}

fn pem_file(dir: &Path, name: &str, key: &PKey<Private>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    path
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// An RSA-2048 intermediate under `root`, with what a Kiln issuer needs
/// (an SKI for the leaves' AKI).
fn rsa_intermediate(root: &Issuer) -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "Kiln RSA Intermediate CA")
        .unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(root.cert.subject_name()).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.set_pubkey(&key).unwrap();
    let extensions = {
        let ctx = b.x509v3_context(Some(&root.cert), None);
        [
            BasicConstraints::new()
                .critical()
                .ca()
                .pathlen(0)
                .build()
                .unwrap(),
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .digital_signature()
                .build()
                .unwrap(),
            ExtendedKeyUsage::new().server_auth().build().unwrap(),
            SubjectKeyIdentifier::new().build(&ctx).unwrap(),
            AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&ctx)
                .unwrap(),
        ]
    };
    for extension in extensions {
        b.append_extension(extension).unwrap();
    }
    b.sign(root.key.as_ref().unwrap(), MessageDigest::sha256())
        .unwrap();
    (b.build(), key)
}
