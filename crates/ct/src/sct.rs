//! The SignedCertificateTimestamp (RFC 6962 §3.2), its JSON form (§4.1) and the
//! embedded SCT list extension (§3.3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::der::{self, Tlv};
use crate::tls::{Reader, put_u16_prefixed};
use crate::{CtError, SCT_LIST_OID};

/// A v1 signed certificate timestamp. `signature` is the raw signature (DER ECDSA-Sig-Value or
/// PKCS#1 v1.5); `hash_alg`/`sig_alg` are the TLS `SignatureAndHashAlgorithm` codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sct {
    /// 0 = v1.
    pub version: u8,
    /// SHA-256 of the log's SubjectPublicKeyInfo.
    pub log_id: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub extensions: Vec<u8>,
    pub hash_alg: u8,
    pub sig_alg: u8,
    pub signature: Vec<u8>,
}

impl Sct {
    /// The TLS encoding of `SignedCertificateTimestamp` (one `SerializedSCT`).
    pub fn to_tls_bytes(&self) -> Result<Vec<u8>, CtError> {
        let mut out = Vec::with_capacity(47 + self.extensions.len() + 4 + self.signature.len());
        out.push(self.version);
        out.extend_from_slice(&self.log_id);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        put_u16_prefixed(&mut out, "SCT extensions", &self.extensions)?;
        out.extend_from_slice(&self.digitally_signed()?);
        Ok(out)
    }

    /// Decodes exactly one TLS-encoded `SignedCertificateTimestamp`; trailing bytes are an error.
    pub fn from_tls_bytes(bytes: &[u8]) -> Result<Sct, CtError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != crate::SCT_VERSION_V1 {
            // Later fields of other versions may be laid out differently.
            return Err(CtError::UnsupportedVersion(version));
        }
        let log_id = r.array()?;
        let timestamp = r.u64()?;
        let extensions = r.u16_prefixed()?.to_vec();
        let (hash_alg, sig_alg, signature) = read_digitally_signed(&mut r)?;
        r.finish()?;
        Ok(Sct {
            version,
            log_id,
            timestamp,
            extensions,
            hash_alg,
            sig_alg,
            signature,
        })
    }

    /// The TLS `DigitallySigned` struct: hash alg, signature alg, `opaque signature<0..2^16-1>`.
    pub fn digitally_signed(&self) -> Result<Vec<u8>, CtError> {
        encode_digitally_signed(self.hash_alg, self.sig_alg, &self.signature)
    }
}

pub(crate) fn encode_digitally_signed(
    hash_alg: u8,
    sig_alg: u8,
    signature: &[u8],
) -> Result<Vec<u8>, CtError> {
    let mut out = Vec::with_capacity(4 + signature.len());
    out.push(hash_alg);
    out.push(sig_alg);
    put_u16_prefixed(&mut out, "signature", signature)?;
    Ok(out)
}

pub(crate) fn read_digitally_signed(r: &mut Reader<'_>) -> Result<(u8, u8, Vec<u8>), CtError> {
    let hash_alg = r.u8()?;
    let sig_alg = r.u8()?;
    let signature = r.u16_prefixed()?.to_vec();
    Ok((hash_alg, sig_alg, signature))
}

pub(crate) fn decode_digitally_signed(bytes: &[u8]) -> Result<(u8, u8, Vec<u8>), CtError> {
    let mut r = Reader::new(bytes);
    let ds = read_digitally_signed(&mut r)?;
    r.finish()?;
    Ok(ds)
}

/// Body of `add-chain` and `add-pre-chain` (RFC 6962 §4.1, §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddChainRequest {
    /// Base64 DER certificates, the submitted one first, then its issuer and so on.
    pub chain: Vec<String>,
}

impl AddChainRequest {
    pub fn from_der_chain<C: AsRef<[u8]>>(chain: &[C]) -> Self {
        Self {
            chain: chain.iter().map(|c| B64.encode(c.as_ref())).collect(),
        }
    }

    pub fn decode_chain(&self) -> Result<Vec<Vec<u8>>, CtError> {
        self.chain
            .iter()
            .map(|c| B64.decode(c).map_err(CtError::from))
            .collect()
    }
}

/// Response of `add-chain` and `add-pre-chain` (RFC 6962 §4.1). Binary fields are base64;
/// `signature` is the TLS `DigitallySigned` struct, not the bare signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddChainResponse {
    pub sct_version: u8,
    pub id: String,
    pub timestamp: u64,
    pub extensions: String,
    pub signature: String,
}

impl TryFrom<&Sct> for AddChainResponse {
    type Error = CtError;

    fn try_from(sct: &Sct) -> Result<Self, CtError> {
        Ok(AddChainResponse {
            sct_version: sct.version,
            id: B64.encode(sct.log_id),
            timestamp: sct.timestamp,
            extensions: B64.encode(&sct.extensions),
            signature: B64.encode(sct.digitally_signed()?),
        })
    }
}

impl TryFrom<&AddChainResponse> for Sct {
    type Error = CtError;

    fn try_from(resp: &AddChainResponse) -> Result<Self, CtError> {
        if resp.sct_version != crate::SCT_VERSION_V1 {
            return Err(CtError::UnsupportedVersion(resp.sct_version));
        }
        let log_id = B64
            .decode(&resp.id)?
            .try_into()
            .map_err(|_| CtError::Tls("log id is not 32 bytes"))?;
        let extensions = B64.decode(&resp.extensions)?;
        let (hash_alg, sig_alg, signature) =
            decode_digitally_signed(&B64.decode(&resp.signature)?)?;
        Ok(Sct {
            version: resp.sct_version,
            log_id,
            timestamp: resp.timestamp,
            extensions,
            hash_alg,
            sig_alg,
            signature,
        })
    }
}

/// The extnValue contents of the SCT list extension, ready for openssl's
/// `X509Extension::new_from_der(oid, false, &Asn1OctetString::new_from_bytes(&der)?)`.
///
/// `new_from_der` copies its bytes verbatim into extnValue, and RFC 6962 §3.3 wants extnValue
/// to hold a DER OCTET STRING whose contents are the TLS `SignedCertificateTimestampList`, so
/// the result is `04 <len> <u16 list length> (<u16 sct length> <sct>)*`.
pub fn encode_sct_list_extension(scts: &[Sct]) -> Result<Vec<u8>, CtError> {
    let mut list = Vec::new();
    for sct in scts {
        put_u16_prefixed(&mut list, "serialized SCT", &sct.to_tls_bytes()?)?;
    }
    let mut tls = Vec::with_capacity(list.len() + 2);
    put_u16_prefixed(&mut tls, "SCT list", &list)?;
    let mut out = Vec::with_capacity(tls.len() + 4);
    der::write_tlv(&mut out, der::TAG_OCTET_STRING, &tls);
    Ok(out)
}

/// Inverse of [`encode_sct_list_extension`]: takes the extnValue contents.
pub fn decode_sct_list_extension(der: &[u8]) -> Result<Vec<Sct>, CtError> {
    let (Tlv { tag, content, .. }, rest) = der::read_tlv(der)?;
    if tag != der::TAG_OCTET_STRING || !rest.is_empty() {
        return Err(CtError::Der(
            "SCT list extension is not a single OCTET STRING",
        ));
    }
    let mut outer = Reader::new(content);
    let list = outer.u16_prefixed()?;
    outer.finish()?;
    let mut r = Reader::new(list);
    let mut scts = Vec::new();
    while !r.is_empty() {
        scts.push(Sct::from_tls_bytes(r.u16_prefixed()?)?);
    }
    Ok(scts)
}

/// The SCTs embedded in a certificate; empty if it has no SCT list extension.
pub fn scts_from_certificate(cert_der: &[u8]) -> Result<Vec<Sct>, CtError> {
    match der::find_extension(cert_der, SCT_LIST_OID)? {
        Some(ext) => decode_sct_list_extension(&ext.value),
        None => Ok(Vec::new()),
    }
}
