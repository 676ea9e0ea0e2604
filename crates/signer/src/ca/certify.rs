//! Making CA certificates: P-256 keys, random serials, Kiln's CA names, and
//! the one builder every CA certificate (root, intermediate, cross-signed
//! intermediate) comes from.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameRef, X509Ref};

use super::{CA_BACKDATE_SECS, CaError, DAY, Issuer, ROOT_VALIDITY_DAYS};

pub(super) fn p256_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// Random positive serial of up to 128 bits for CA and listener certificates.
pub(super) fn random_serial() -> Result<BigNum, ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(128, MsbOption::MAYBE_ZERO, false)?;
    Ok(serial)
}

/// What a root's common name begins with; a random suffix follows.
pub(super) const ROOT_LABEL: &str = "Kiln Root CA";

/// A new self-signed P-256 root, "`label` <random suffix>". The suffix keeps
/// roots from different installations (and test runs) distinguishable in
/// trust stores.
pub(super) fn new_root(label: &str) -> Result<Issuer, CaError> {
    let mut suffix = [0u8; 4];
    openssl::rand::rand_bytes(&mut suffix)?;
    let name = ca_name(&format!("{label} {}", hex::encode(suffix)))?;
    let key = p256_key()?;
    let cert = ca_certificate(&name, &key, None, ROOT_VALIDITY_DAYS, None)?;
    Issuer::new(cert, key)
}

pub(super) fn ca_name(common_name: &str) -> Result<X509Name, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Kiln")?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

/// Builds a CA certificate; `signer: None` means self-signed (the root).
pub(super) fn ca_certificate(
    subject: &X509NameRef,
    key: &PKey<Private>,
    signer: Option<&Issuer>,
    validity_days: i64,
    path_len: Option<u32>,
) -> Result<X509, CaError> {
    let not_after = time::OffsetDateTime::now_utc().unix_timestamp() + validity_days * DAY;
    let signing_key = match signer {
        Some(s) => s.file_key()?,
        None => key,
    };
    certify(
        subject,
        key,
        signer.map(|s| s.cert.as_ref()),
        signing_key,
        not_after,
        path_len,
    )
}

/// Signs a CA certificate for `subject` and `public_key` with
/// `signing_key`, the key of `issuer` (`None`: self-signed), valid until
/// `not_after` (Unix seconds). Only the public key of the subject is needed,
/// so a second root can cross-sign an intermediate whose key it never sees.
pub(super) fn certify<T: HasPublic>(
    subject: &X509NameRef,
    public_key: &PKeyRef<T>,
    issuer: Option<&X509Ref>,
    signing_key: &PKeyRef<Private>,
    not_after: i64,
    path_len: Option<u32>,
) -> Result<X509, CaError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    let serial = random_serial()?.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(subject)?;
    builder.set_issuer_name(issuer.map_or(subject, |i| i.subject_name()))?;
    let not_before = Asn1Time::from_unix(now - CA_BACKDATE_SECS)?;
    let not_after = Asn1Time::from_unix(not_after)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.set_pubkey(public_key)?;

    let mut basic_constraints = BasicConstraints::new();
    basic_constraints.critical().ca();
    if let Some(len) = path_len {
        basic_constraints.pathlen(len);
    }
    let mut extensions = vec![
        basic_constraints.build()?,
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .digital_signature()
            .build()?,
    ];
    {
        let ctx = builder.x509v3_context(issuer, None);
        extensions.push(SubjectKeyIdentifier::new().build(&ctx)?);
        if issuer.is_some() {
            // Baseline Requirements: TLS subordinate CAs carry an EKU.
            extensions.push(ExtendedKeyUsage::new().server_auth().build()?);
            extensions.push(AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?);
        }
    }
    for extension in extensions {
        builder.append_extension(extension)?;
    }
    builder.sign(signing_key, MessageDigest::sha256())?;
    Ok(builder.build())
}

/// A certificate as PEM text, as chains are served.
pub(super) fn pem_text(cert: &X509Ref) -> String {
    // PEM-encoding a certificate already held in memory only fails on
    // allocation failure, which Rust treats as fatal anyway.
    let pem = cert
        .to_pem()
        .expect("PEM-encoding an in-memory certificate");
    String::from_utf8_lossy(&pem).into_owned()
}
