//! The intermediate's key on a PKCS#11 token (an HSM; SoftHSM in tests)
//! instead of in `intermediate-key.pem`: found by label once, at start,
//! checked against `intermediate.pem`, then used through a few sessions
//! kept open and logged in. The key never leaves the token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use serde::Deserialize;

use super::CaError;
use crate::certificate::CertError;

/// `[signer.pkcs11]`: where the intermediate's key is when it is not a file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Source {
    /// The token vendor's PKCS#11 library.
    pub module: PathBuf,
    /// CKA_LABEL of the token (as `softhsm2-util --init-token --label`).
    pub token_label: String,
    /// CKA_LABEL of the private key (and of its public key, if stored).
    pub key_label: String,
    /// File holding the user PIN (mode 0600, or 0440 as a Secret mounts it);
    /// a PIN is never config text.
    pub pin_file: PathBuf,
    /// Sessions held open: signatures the token makes at once.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

fn default_sessions() -> usize {
    4
}

const MAX_SESSIONS: usize = 64;

/// The issuer's private key: read from a file, or kept on a token that
/// signs for it.
#[derive(Clone)]
pub(crate) enum IssuerKey {
    File(PKey<Private>),
    Token(Arc<TokenKey>),
}

/// Whether a token key signs ECDSA or RSA PKCS#1 v1.5 (the file key's two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKeyType {
    Ec,
    Rsa,
}

/// The private key on the token, with sessions to sign in. A `Session` is
/// `Send` but not `Sync`, so each signature takes one idle session out and
/// puts it back: as many signatures at once as sessions, no more.
pub(crate) struct TokenKey {
    token: String,
    label: String,
    key_type: TokenKeyType,
    idle: Mutex<Vec<Held>>,
    returned: Condvar,
}

struct Held {
    session: Session,
    /// The key's handle in this session (handles are per session).
    key: ObjectHandle,
}

// Names only: never the PIN, never a handle.
impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("token", &self.token)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Loads the module, logs in to the token named `source.token_label`
    /// with `pin`, and finds the private key labelled `source.key_label`;
    /// refuses (naming token and label) a missing token or key, a wrong
    /// PIN, or a key whose public half the token shows and which is not
    /// `cert_key`. Whether the key signs for `cert_key` is proved after,
    /// by one signature (`IssuerSigner::with_key`).
    pub(crate) fn open(
        source: &Pkcs11Source,
        pin: AuthPin,
        cert_key: &PKey<Public>,
    ) -> Result<Self, CaError> {
        let fail = |problem: String| CaError::Token {
            token: source.token_label.clone(),
            key: source.key_label.clone(),
            problem,
        };
        if !(1..=MAX_SESSIONS).contains(&source.sessions) {
            return Err(fail(format!("sessions must be 1..={MAX_SESSIONS}")));
        }
        let ctx = load_module(&source.module)?;
        let slot = find_token(&ctx, &source.module, &source.token_label).map_err(&fail)?;
        let open = || {
            ctx.open_ro_session(slot)
                .map_err(|e| fail(format!("cannot open a session: {e}")))
        };
        let first = open()?;
        login(&first, &pin, &source.pin_file).map_err(&fail)?;
        let key = find_key(&first, &source.key_label).map_err(&fail)?;
        let key_type = key_type(&first, key).map_err(&fail)?;
        match public_key(&first, key, key_type, &source.key_label) {
            Ok(Some(shown)) if !shown.public_eq(cert_key) => {
                return Err(fail(
                    "the key on the token is not the key of intermediate.pem".into(),
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => tracing::info!(
                token = %source.token_label,
                key = %source.key_label,
                "the token shows no public key for this key: a probe signature checks it"
            ),
            Err(e) => return Err(fail(format!("cannot read the public key: {e}"))),
        }
        // Login is the token's, not the session's: the others share it.
        let mut idle = vec![Held {
            session: first,
            key,
        }];
        for _ in 1..source.sessions {
            let session = open()?;
            let key = find_key(&session, &source.key_label).map_err(&fail)?;
            idle.push(Held { session, key });
        }
        Ok(Self {
            token: source.token_label.clone(),
            label: source.key_label.clone(),
            key_type,
            idle: Mutex::new(idle),
            returned: Condvar::new(),
        })
    }

    pub(crate) fn key_type(&self) -> TokenKeyType {
        self.key_type
    }

    /// The refusal of this key, naming its token and label.
    pub(crate) fn refusal(&self, problem: impl fmt::Display) -> CaError {
        CaError::Token {
            token: self.token.clone(),
            key: self.label.clone(),
            problem: problem.to_string(),
        }
    }

    /// The token's signature over `data` with SHA-256, as X.509 carries it
    /// (DER ECDSA-Sig-Value, or PKCS#1 v1.5). Blocks until a session is
    /// free and the token answers, off the async runtime's worker.
    pub(crate) fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CertError> {
        off_the_runtime(|| {
            let held = self.take();
            let signed = match self.key_type {
                // The digest here and CKM_ECDSA there: more tokens offer
                // that than CKM_ECDSA_SHA256, and it is the same signature.
                TokenKeyType::Ec => {
                    let digest = openssl::sha::sha256(data);
                    held.session
                        .sign(&Mechanism::Ecdsa, held.key, &digest)
                        .map_err(|e| self.failed(e))
                        .and_then(|raw| ecdsa_sig_value(&raw).map_err(|e| self.failed(e)))
                }
                TokenKeyType::Rsa => held
                    .session
                    .sign(&Mechanism::Sha256RsaPkcs, held.key, data)
                    .map_err(|e| self.failed(e)),
            };
            self.put_back(held);
            signed
        })
    }

    fn failed(&self, e: impl fmt::Display) -> CertError {
        CertError::BadIssuer(format!(
            "PKCS#11 token {:?}, key {:?}: signing failed: {e}",
            self.token, self.label
        ))
    }

    fn take(&self) -> Held {
        // A panic elsewhere cannot leave the list half-changed.
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(held) = idle.pop() {
                return held;
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn put_back(&self, held: Held) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(held);
        self.returned.notify_one();
    }
}

/// Runs `f`, which blocks on the token, without starving the tasks of a
/// multi-threaded runtime's worker (the signing call sites are sync code
/// inside async handlers). Elsewhere (a current-thread runtime, or none)
/// blocking in place is what there is.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The module's context, loaded and initialized once per process and kept:
/// PKCS#11 wants one C_Initialize per process, and two racing (two loads at
/// once) leave a library such as SoftHSM with the other's sessions invalid.
fn load_module(module: &Path) -> Result<Pkcs11, CaError> {
    static LOADED: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ctx)) = loaded.iter().find(|(path, _)| path == module) {
        return Ok(ctx.clone());
    }
    let fail = |e: CkError| CaError::Pkcs11Module {
        module: module.to_path_buf(),
        problem: e.to_string(),
    };
    let ctx = Pkcs11::new(module).map_err(fail)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Initialized by other code in this process: usable all the same.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(e)),
    }
    loaded.push((module.to_path_buf(), ctx.clone()));
    Ok(ctx)
}

fn find_token(ctx: &Pkcs11, module: &Path, label: &str) -> Result<cryptoki::slot::Slot, String> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| format!("cannot list the tokens of {}: {e}", module.display()))?;
    let mut seen = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| format!("cannot read a token's label: {e}"))?;
        let found = info.label().trim_end();
        if found == label {
            return Ok(slot);
        }
        seen.push(format!("{found:?}"));
    }
    Err(format!(
        "no such token in {} (tokens there: {})",
        module.display(),
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join(", ")
        }
    ))
}

fn login(session: &Session, pin: &AuthPin, pin_file: &Path) -> Result<(), String> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, Function::Login)) => Err(format!(
            "the PIN in {} is wrong (the token counts failed logins)",
            pin_file.display()
        )),
        // Login is per process: a second load would skip the PIN check.
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, Function::Login)) => {
            Err("this process is logged in to the token already: load it once".into())
        }
        Err(CkError::Pkcs11(RvError::PinLocked, Function::Login)) => {
            Err("the user PIN is locked: the token's security officer must reset it".into())
        }
        Err(e) => Err(format!("cannot log in: {e}")),
    }
}

fn find_key(session: &Session, label: &str) -> Result<ObjectHandle, String> {
    let template = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let found = session
        .find_objects(&template)
        .map_err(|e| format!("cannot search the token: {e}"))?;
    match found.as_slice() {
        [key] => Ok(*key),
        [] => Err("no private key with this label on the token".into()),
        more => Err(format!(
            "{} private keys have this label: it must name one",
            more.len()
        )),
    }
}

fn key_type(session: &Session, key: ObjectHandle) -> Result<TokenKeyType, String> {
    let attributes = session
        .get_attributes(key, &[AttributeType::KeyType])
        .map_err(|e| format!("cannot read the key's type: {e}"))?;
    match attributes.first() {
        Some(Attribute::KeyType(t)) if *t == KeyType::EC => Ok(TokenKeyType::Ec),
        Some(Attribute::KeyType(t)) if *t == KeyType::RSA => Ok(TokenKeyType::Rsa),
        Some(Attribute::KeyType(t)) => Err(format!("a {t} key: only EC and RSA keys sign")),
        _ => Err("the token does not say the key's type".into()),
    }
}

/// The public key the token shows for `key`: an RSA key's modulus and
/// exponent, or the EC point of the public key object with the same label.
/// `None` when it shows none (a token need not keep the public object).
fn public_key(
    session: &Session,
    key: ObjectHandle,
    key_type: TokenKeyType,
    label: &str,
) -> Result<Option<PKey<Public>>, String> {
    let attribute = |object, wanted: AttributeType| {
        session
            .get_attributes(object, &[wanted])
            .map_err(|e| e.to_string())
            .map(|mut found| found.pop())
    };
    match key_type {
        TokenKeyType::Rsa => {
            let (Some(Attribute::Modulus(n)), Some(Attribute::PublicExponent(e))) = (
                attribute(key, AttributeType::Modulus)?,
                attribute(key, AttributeType::PublicExponent)?,
            ) else {
                return Ok(None);
            };
            let rsa = Rsa::from_public_components(
                BigNum::from_slice(&n).map_err(|e| e.to_string())?,
                BigNum::from_slice(&e).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            PKey::from_rsa(rsa).map(Some).map_err(|e| e.to_string())
        }
        TokenKeyType::Ec => {
            let template = [
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ];
            let found = session.find_objects(&template).map_err(|e| e.to_string())?;
            let [public] = found.as_slice() else {
                return Ok(None);
            };
            let (Some(Attribute::EcParams(params)), Some(Attribute::EcPoint(point))) = (
                attribute(*public, AttributeType::EcParams)?,
                attribute(*public, AttributeType::EcPoint)?,
            ) else {
                return Ok(None);
            };
            ec_public_key(&params, &point).map(Some)
        }
    }
}

/// An EC public key from CKA_EC_PARAMS (a named curve's DER OID) and
/// CKA_EC_POINT: a DER OCTET STRING around the X9.62 point, as the standard
/// says, or the bare point, as some tokens give it. Decoding it as a
/// SubjectPublicKeyInfo checks that the point is on the curve.
fn ec_public_key(params: &[u8], point: &[u8]) -> Result<PKey<Public>, String> {
    let unwrapped = match point {
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        _ => None,
    };
    // A bare point can look wrapped by chance; then the wrapped reading
    // fails to decode and the bare one is right.
    let mut last = String::new();
    for point in unwrapped.into_iter().chain([point]) {
        // SEQUENCE { SEQUENCE { id-ecPublicKey, params }, BIT STRING point }
        let algorithm = der_sequence(&[EC_PUBLIC_KEY_OID, params].concat());
        let mut bits = vec![0x03];
        bits.extend(der_len(point.len() + 1));
        bits.push(0);
        bits.extend_from_slice(point);
        match PKey::public_key_from_der(&der_sequence(&[algorithm, bits].concat())) {
            Ok(key) => return Ok(key),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("EC public key: {last}"))
}

/// id-ecPublicKey (1.2.840.10045.2.1) in DER.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

fn der_sequence(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..0x80 => vec![len as u8],
        0x80..0x100 => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

/// CKM_ECDSA's r || s (each half the curve's length) as X.509's DER
/// ECDSA-Sig-Value.
fn ecdsa_sig_value(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(format!("an ECDSA signature of {} bytes", raw.len()));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let der = BigNum::from_slice(r)
        .and_then(|r| Ok((r, BigNum::from_slice(s)?)))
        .and_then(|(r, s)| EcdsaSig::from_private_components(r, s))
        .and_then(|sig| sig.to_der());
    der.map_err(|e| e.to_string())
}

/// The PIN: the file's first line. Read before its mode is checked, so a
/// missing file says "missing" first, as for a key file.
pub(super) fn read_pin(path: &Path) -> Result<AuthPin, CaError> {
    let refused = |problem| CaError::Pin {
        path: path.to_path_buf(),
        problem,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(refused("missing")),
        Err(source) => {
            return Err(CaError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    super::require_owner_only(path)?;
    let text = String::from_utf8(text).map_err(|_| refused("not UTF-8 text"))?;
    match text.lines().next() {
        Some(pin) if !pin.is_empty() => Ok(AuthPin::new(pin.into())),
        _ => Err(refused("empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        // r with its top bit set gains a 0x00 in DER; a short s loses zeros.
        let mut raw = vec![0x80; 32];
        raw.extend([0u8; 31].iter().chain(&[0x05]));
        let der = ecdsa_sig_value(&raw).unwrap();
        let sig = EcdsaSig::from_der(&der).unwrap();
        assert_eq!(sig.r().to_vec(), vec![0x80; 32]);
        assert_eq!(sig.s().to_vec(), vec![0x05]);
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert!(ecdsa_sig_value(&[1, 2, 3]).is_err());
        assert!(ecdsa_sig_value(&[]).is_err());
    }

    #[test]
    fn ec_points_are_read_wrapped_or_bare() {
        use openssl::bn::BigNumContext;
        use openssl::ec::{EcGroup, EcKey, PointConversionForm};
        use openssl::nid::Nid;
        let curves: [(Nid, &[u8]); 3] = [
            (
                Nid::X9_62_PRIME256V1,
                &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            ),
            (Nid::SECP384R1, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]),
            (Nid::SECP521R1, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]),
        ];
        for (nid, oid) in curves {
            let group = EcGroup::from_curve_name(nid).unwrap();
            let key = EcKey::generate(&group).unwrap();
            let mut ctx = BigNumContext::new().unwrap();
            let point = key
                .public_key()
                .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
                .unwrap();
            let want = PKey::from_ec_key(key).unwrap();
            let mut wrapped = vec![0x04];
            wrapped.extend(der_len(point.len()));
            wrapped.extend_from_slice(&point);
            for shown in [&wrapped[..], &point[..]] {
                let read = ec_public_key(oid, shown).unwrap();
                assert!(read.public_eq(&want), "{nid:?}");
            }
        }
        assert!(ec_public_key(curves[0].1, &[0x04, 1, 2]).is_err());
    }
}
