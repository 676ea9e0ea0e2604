//! Certificate builders for tests (feature `test-util`): a CA, and leaves that differ only in
//! their CT extension, as a precertificate and its final certificate do.

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Extension, X509Name};

use crate::{POISON_EXTENSION_DER, POISON_OID, SCT_LIST_OID};

pub fn p256_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn random_serial() -> Result<BigNum, ErrorStack> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    bytes[0] &= 0x7f;
    BigNum::from_slice(&bytes)
}

fn name(common_name: &str) -> Result<X509Name, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An extension with raw extnValue contents.
pub fn raw_extension(oid: &str, critical: bool, value: &[u8]) -> Result<X509Extension, ErrorStack> {
    let oid = Asn1Object::from_str(oid)?;
    let value = Asn1OctetString::new_from_bytes(value)?;
    X509Extension::new_from_der(&oid, critical, &value)
}

pub struct TestCa {
    pub key: PKey<Private>,
    pub cert: X509,
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<Self, ErrorStack> {
        let key = p256_key()?;
        let name = name(common_name)?;
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = random_serial()?.to_asn1_integer()?;
        let not_before = Asn1Time::from_unix(now() - 3600)?;
        let not_after = Asn1Time::from_unix(now() + 86_400 * 365)?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(Self {
            key,
            cert: b.build(),
        })
    }

    pub fn der(&self) -> Result<Vec<u8>, ErrorStack> {
        self.cert.to_der()
    }
}

/// The CT-specific part of a leaf.
pub enum CtMarker<'a> {
    None,
    /// The critical poison: a precertificate.
    Poison,
    /// A non-critical SCT list with these extnValue contents (from
    /// [`crate::encode_sct_list_extension`]): a final certificate.
    SctList(&'a [u8]),
}

/// A leaf template; every `build` yields the same TBS apart from the CT marker, which sits in
/// the middle of the extensions so removing it exercises re-encoding around it.
pub struct TestLeaf {
    pub key: PKey<Private>,
    pub names: Vec<String>,
    pub serial: BigNum,
    pub not_before: i64,
    /// notAfter − notBefore, in days (90 unless changed).
    pub validity_days: i64,
}

impl TestLeaf {
    pub fn new(names: &[&str]) -> Result<Self, ErrorStack> {
        Ok(Self {
            key: p256_key()?,
            names: names.iter().map(|n| n.to_string()).collect(),
            serial: random_serial()?,
            not_before: now() - 60,
            validity_days: 90,
        })
    }

    pub fn build(&self, ca: &TestCa, marker: CtMarker<'_>) -> Result<X509, ErrorStack> {
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = self.serial.to_asn1_integer()?;
        let subject = name(self.names.first().map_or("leaf", |n| n.as_str()))?;
        let not_before = Asn1Time::from_unix(self.not_before)?;
        let not_after = Asn1Time::from_unix(self.not_before + 86_400 * self.validity_days)?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(ca.cert.subject_name())?;
        b.set_pubkey(&self.key)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        match marker {
            CtMarker::None => {}
            CtMarker::Poison => {
                b.append_extension(raw_extension(POISON_OID, true, &POISON_EXTENSION_DER)?)?
            }
            CtMarker::SctList(der) => {
                b.append_extension(raw_extension(SCT_LIST_OID, false, der)?)?
            }
        }
        b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
        let mut san = SubjectAlternativeName::new();
        for n in &self.names {
            san.dns(n);
        }
        let san = san.build(&b.x509v3_context(Some(&ca.cert), None))?;
        b.append_extension(san)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&ca.cert), None))?;
        b.append_extension(aki)?;
        b.sign(&ca.key, MessageDigest::sha256())?;
        Ok(b.build())
    }

    pub fn precert_der(&self, ca: &TestCa) -> Result<Vec<u8>, ErrorStack> {
        self.build(ca, CtMarker::Poison)?.to_der()
    }
}
