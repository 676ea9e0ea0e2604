//! Kiln's own CA hierarchy: a P-256 root and a single intermediate that signs
//! every leaf, and optionally a second root that cross-signs the same
//! intermediate (`cross_sign`: alternate chains). Only the signer process
//! loads these keys; the signer may hold the intermediate's on a PKCS#11
//! token instead (`pkcs11`).

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509VerifyResult};

use crate::certificate::{CertError, IssuerSigner};

mod ceremony;
mod certify;
mod cross_sign;
mod files;
mod issuing;
mod pkcs11;
pub use ceremony::{cross_sign_intermediate, init_alternate_root, init_root, issue_intermediate};
use certify::{ROOT_LABEL, ca_certificate, ca_name, new_root, p256_key, random_serial};
pub use cross_sign::CrossSigned;
use files::{read_required, require_owner_only, sync_dir, write_atomic};
pub use issuing::IssuingCa;
pub use pkcs11::Pkcs11Source;
pub(crate) use pkcs11::{IssuerKey, TokenKey, TokenKeyType};

const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root-key.pem";
const INTERMEDIATE_CERT: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate-key.pem";

const DAY: i64 = 24 * 60 * 60;
const ROOT_VALIDITY_DAYS: i64 = 3653;
const INTERMEDIATE_VALIDITY_DAYS: i64 = 1826;
/// An intermediate signs leaves only.
const INTERMEDIATE_PATH_LEN: u32 = 0;
/// CA/B Forum maximum for TLS server certificates (inclusive period).
const TLS_SERVER_VALIDITY_DAYS: i64 = 397;
/// CA certificates start an hour in the past to tolerate relying-party clock skew.
const CA_BACKDATE_SECS: i64 = 60 * 60;
const TLS_BACKDATE_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("openssl: {0}")]
    OpenSsl(#[from] ErrorStack),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("CA directory is incomplete: {} is missing (the CA is made by `kiln init`, not by the signer)", .0.display())]
    Incomplete(PathBuf),
    #[error("{} is readable by others or writable by its group (mode {mode:04o}): `chmod 600` it", path.display())]
    LooseKey { path: PathBuf, mode: u32 },
    #[error("inconsistent CA material: {0}")]
    Inconsistent(&'static str),
    #[error("invalid TLS certificate request: {0}")]
    InvalidRequest(String),
    #[error("CA cannot sign leaves: {0}")]
    CannotSign(#[source] CertError),
    #[error("PKCS#11 module {}: {problem}", module.display())]
    Pkcs11Module { module: PathBuf, problem: String },
    #[error("PKCS#11 token {token:?}, key {key:?}: {problem}")]
    Token {
        token: String,
        key: String,
        problem: String,
    },
    #[error("PIN file {}: {problem}", path.display())]
    Pin {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("the CA key is on a PKCS#11 token: only the signer's signatures can use it")]
    KeyOnToken,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A CA certificate with its private key, made only by [`Issuer::new`] (a
/// key in memory) or by the signer's load from a PKCS#11 token.
///
/// The fields are for reading. What signing needs was derived from them,
/// and checked, when the issuer was made, and is kept apart: it holds the
/// same key, so nothing done to the fields afterwards can make this issuer
/// sign with a key that does not belong to the certificate it names.
#[derive(Clone)]
pub struct Issuer {
    pub cert: X509,
    /// `None` when the key stays on a PKCS#11 token.
    pub key: Option<PKey<Private>>,
    signer: IssuerSigner,
    /// How the store names this certificate ([`store::Issuer::id_of`]).
    id: String,
}

impl Issuer {
    /// Refuses a key that does not belong to `cert`, or a pair that cannot
    /// sign Kiln's leaves (a key type other than EC or RSA, no subject key
    /// identifier): the signer does not start rather than fail every order.
    pub fn new(cert: X509, key: PKey<Private>) -> Result<Self, CaError> {
        if !cert.public_key()?.public_eq(&key) {
            return Err(CaError::Inconsistent(
                "private key does not match certificate",
            ));
        }
        let signer = IssuerSigner::new(&cert, &key).map_err(CaError::CannotSign)?;
        Self::with_signer(cert, Some(key), signer)
    }

    /// An issuer whose key is `token`'s, refused unless a signature by it
    /// verifies under `cert` (`IssuerSigner::with_key`).
    pub(crate) fn on_token(cert: X509, token: TokenKey) -> Result<Self, CaError> {
        let token = std::sync::Arc::new(token);
        let signer = IssuerSigner::with_key(&cert, IssuerKey::Token(token.clone()))
            .map_err(|e| token.refusal(format!("intermediate.pem cannot use it: {e}")))?;
        Self::with_signer(cert, None, signer)
    }

    fn with_signer(
        cert: X509,
        key: Option<PKey<Private>>,
        signer: IssuerSigner,
    ) -> Result<Self, CaError> {
        let id = store::Issuer::id_of(&cert.to_der()?);
        Ok(Self {
            cert,
            key,
            signer,
            id,
        })
    }

    /// The key in memory, for what only a file key does (the ceremony's
    /// signatures with OpenSSL's builder, storing the CA).
    fn file_key(&self) -> Result<&PKey<Private>, CaError> {
        self.key.as_ref().ok_or(CaError::KeyOnToken)
    }

    /// A TLS server certificate (fresh P-256 key) for Kiln's own HTTPS
    /// listener, issued by this CA (the intermediate, whose key must be in
    /// memory: `kiln init` makes the api's certificate this way).
    pub fn tls_server_certificate(
        &self,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<(X509, PKey<Private>), CaError> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(CaError::InvalidRequest(
                "at least one DNS name or IP address is required".into(),
            ));
        }
        if let Some(bad) = dns_names
            .iter()
            .find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(CaError::InvalidRequest(format!("bad DNS name {bad:?}")));
        }

        let key = p256_key()?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let not_before = now - TLS_BACKDATE_SECS;
        let not_after = not_before + TLS_SERVER_VALIDITY_DAYS * DAY - 1;

        let mut subject = X509Name::builder()?;
        let common_name = dns_names.first().filter(|n| n.len() <= 64);
        if let Some(cn) = common_name {
            subject.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        }
        let subject = subject.build();

        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = random_serial()?.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_issuer_name(self.cert.subject_name())?;
        builder.set_subject_name(&subject)?;
        let (not_before, not_after) = (
            Asn1Time::from_unix(not_before)?,
            Asn1Time::from_unix(not_after)?,
        );
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.set_pubkey(&key)?;

        let mut san = SubjectAlternativeName::new();
        // RFC 5280 §4.2.1.6: with an empty subject the SAN must be critical.
        if common_name.is_none() {
            san.critical();
        }
        for name in dns_names {
            san.dns(name);
        }
        for ip in ips {
            san.ip(&ip.to_string());
        }
        let extensions = {
            let ctx = builder.x509v3_context(Some(&self.cert), None);
            [
                KeyUsage::new().critical().digital_signature().build()?,
                ExtendedKeyUsage::new().server_auth().build()?,
                BasicConstraints::new().critical().build()?,
                SubjectKeyIdentifier::new().build(&ctx)?,
                AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?,
                san.build(&ctx)?,
            ]
        };
        for extension in extensions {
            builder.append_extension(extension)?;
        }
        builder.sign(self.file_key()?, MessageDigest::sha256())?;
        Ok((builder.build(), key))
    }

    pub(crate) fn signer(&self) -> &IssuerSigner {
        &self.signer
    }

    /// The name every certificate this issuer signs carries in the store.
    pub fn id(&self) -> &str {
        &self.id
    }
}

// Manual impl so that logging an issuer can never print key material.
impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("subject", &self.cert.subject_name())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct CaHierarchy {
    pub root: Issuer,
    pub intermediate: Issuer,
    /// The intermediate as a second root certifies it, when alternate
    /// chains are offered ([`CaHierarchy::with_alternate_chain`]).
    pub cross_signed: Option<CrossSigned>,
}

impl CaHierarchy {
    /// P-256 root ("Kiln Root CA <random suffix>", ~10 years) and intermediate
    /// ("Kiln Intermediate CA", ~5 years, pathlen:0, EKU serverAuth).
    pub fn generate() -> Result<Self, CaError> {
        let root = new_root(ROOT_LABEL)?;

        let intermediate_name = ca_name("Kiln Intermediate CA")?;
        let intermediate_key = p256_key()?;
        let intermediate_cert = ca_certificate(
            &intermediate_name,
            &intermediate_key,
            Some(&root),
            INTERMEDIATE_VALIDITY_DAYS,
            Some(INTERMEDIATE_PATH_LEN),
        )?;
        Ok(Self {
            root,
            intermediate: Issuer::new(intermediate_cert, intermediate_key)?,
            cross_signed: None,
        })
    }

    /// Loads the hierarchy from `dir`, or generates and stores one if `dir`
    /// holds none yet.
    ///
    /// `root.pem` is written last and acts as the commit marker: if it is
    /// absent a new CA is generated (overwriting leftovers of an interrupted
    /// run); if it is present every other file must be too.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let root_path = dir.join(ROOT_CERT);
        if root_path.try_exists().map_err(io_err(&root_path))? {
            return Self::load(dir);
        }
        let ca = Self::generate()?;
        ca.store(dir)?;
        Ok(ca)
    }

    fn load(dir: &Path) -> Result<Self, CaError> {
        let root = load_issuer(dir, ROOT_CERT, ROOT_KEY)?;
        let intermediate = load_issuer(dir, INTERMEDIATE_CERT, INTERMEDIATE_KEY)?;
        // Refuse to run with a mismatched pair rather than issue an unverifiable chain.
        let root_key = root.file_key()?;
        if !root.cert.verify(root_key)?
            || root.cert.issued(&intermediate.cert) != X509VerifyResult::OK
            || !intermediate.cert.verify(root_key)?
        {
            return Err(CaError::Inconsistent(
                "intermediate is not issued by the stored root",
            ));
        }
        Ok(Self {
            root,
            intermediate,
            cross_signed: None,
        })
    }

    fn store(&self, dir: &Path) -> Result<(), CaError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_atomic(
            dir,
            ROOT_KEY,
            &self.root.file_key()?.private_key_to_pem_pkcs8()?,
            0o600,
        )?;
        write_atomic(
            dir,
            INTERMEDIATE_KEY,
            &self.intermediate.file_key()?.private_key_to_pem_pkcs8()?,
            0o600,
        )?;
        write_atomic(
            dir,
            INTERMEDIATE_CERT,
            &self.intermediate.cert.to_pem()?,
            0o644,
        )?;
        write_atomic(dir, ROOT_CERT, &self.root.cert.to_pem()?, 0o644)?;
        sync_dir(dir)
    }

    /// A TLS server certificate (fresh P-256 key) for Kiln's own HTTPS
    /// listener, issued by the intermediate.
    pub fn tls_server_certificate(
        &self,
        dns_names: &[&str],
        ips: &[IpAddr],
    ) -> Result<(X509, PKey<Private>), CaError> {
        self.intermediate.tls_server_certificate(dns_names, ips)
    }

    /// What the signer stage holds: everything but the root's key.
    pub fn issuing(&self) -> IssuingCa {
        IssuingCa {
            intermediate: self.intermediate.clone(),
            root_cert: self.root.cert.clone(),
            cross_signed: self.cross_signed.clone(),
        }
    }

    /// The intermediate's chain, as [`IssuingCa::chain_pem`].
    pub fn chain_pem(&self) -> String {
        self.issuing().chain_pem()
    }
}

fn load_issuer(dir: &Path, cert_file: &str, key_file: &str) -> Result<Issuer, CaError> {
    let cert = X509::from_pem(&read_required(&dir.join(cert_file))?)?;
    let key_path = dir.join(key_file);
    let key = PKey::private_key_from_pem(&read_required(&key_path)?)?;
    // After the read, so a missing file says "missing" first.
    require_owner_only(&key_path)?;
    Issuer::new(cert, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509VerifyResult};

    fn verify(leaf: &X509, chain: &[&X509], root: &X509) -> Result<(), X509VerifyResult> {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(root.clone()).unwrap();
        let store = store.build();
        let mut untrusted = Stack::new().unwrap();
        for c in chain {
            untrusted.push((*c).clone()).unwrap();
        }
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, leaf, &untrusted, |c| {
            Ok(if c.verify_cert()? {
                Ok(())
            } else {
                Err(c.error())
            })
        })
        .unwrap()
    }

    #[test]
    fn generated_hierarchy_verifies() {
        let ca = CaHierarchy::generate().unwrap();
        verify(&ca.intermediate.cert, &[], &ca.root.cert).unwrap();
        assert!(
            ca.intermediate
                .cert
                .verify(ca.root.file_key().unwrap())
                .unwrap()
        );
        assert_ne!(ca.root.cert.serial_number().to_bn().unwrap().num_bits(), 0);
        assert!(ca.chain_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            X509::from_pem(ca.chain_pem().as_bytes()).unwrap(),
            ca.intermediate.cert
        );
    }

    #[test]
    fn tls_server_certificate_verifies_and_has_sans() {
        let ca = CaHierarchy::generate().unwrap();
        let ips = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let (cert, key) = ca.tls_server_certificate(&["localhost"], &ips).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key));
        verify(&cert, &[&ca.intermediate.cert], &ca.root.cert).unwrap();
        let sans = cert.subject_alt_names().unwrap();
        assert_eq!(sans.len(), 3);
        assert_eq!(sans.get(0).unwrap().dnsname(), Some("localhost"));
        assert_eq!(sans.get(1).unwrap().ipaddress(), Some(&[127, 0, 0, 1][..]));
        let days = cert.not_before().diff(cert.not_after()).unwrap().days;
        assert!(days <= 397, "{days} days");
    }

    #[test]
    fn tls_server_certificate_needs_a_name() {
        let ca = CaHierarchy::generate().unwrap();
        assert!(matches!(
            ca.tls_server_certificate(&[], &[]),
            Err(CaError::InvalidRequest(_))
        ));
    }

    /// A self-signed certificate for `key`, with or without an SKI.
    fn self_signed(key: &PKey<Private>, md: MessageDigest, with_ski: bool) -> X509 {
        let name = ca_name("Kiln Test CA").unwrap();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.set_pubkey(key).unwrap();
        if with_ski {
            let ski = SubjectKeyIdentifier::new()
                .build(&b.x509v3_context(None, None))
                .unwrap();
            b.append_extension(ski).unwrap();
        }
        b.sign(key, md).unwrap();
        b.build()
    }

    /// What would fail every leaf is refused once, when the issuer is made.
    #[test]
    fn issuers_that_cannot_sign_leaves_are_refused() {
        let key = p256_key().unwrap();
        Issuer::new(
            self_signed(&key, MessageDigest::sha256(), true),
            key.clone(),
        )
        .unwrap();
        let stranger = p256_key().unwrap();
        assert!(matches!(
            Issuer::new(self_signed(&key, MessageDigest::sha256(), true), stranger),
            Err(CaError::Inconsistent(_))
        ));
        assert!(matches!(
            Issuer::new(self_signed(&key, MessageDigest::sha256(), false), key),
            Err(CaError::CannotSign(CertError::BadIssuer(_)))
        ));
        let ed25519 = PKey::generate_ed25519().unwrap();
        assert!(matches!(
            Issuer::new(self_signed(&ed25519, MessageDigest::null(), true), ed25519),
            Err(CaError::CannotSign(CertError::UnsupportedIssuerKey))
        ));
    }
}
