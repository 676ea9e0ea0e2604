//! A small, strict DER walker: just enough of X.509 to find, inspect and remove extensions
//! and to reach the SubjectPublicKeyInfo, while copying every other byte unchanged.

use openssl::sha::sha256;

use crate::{CtError, POISON_EXTENSION_DER, POISON_OID};

pub(crate) const TAG_BOOLEAN: u8 = 0x01;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version` in TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions` in TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;

/// One DER element: `raw` is the whole encoding, `content` the value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads one element and returns it with the bytes that follow it.
pub fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), CtError> {
    let (&tag, rest) = input.split_first().ok_or(CtError::Der("truncated tag"))?;
    if tag & 0x1f == 0x1f {
        // High tag numbers never occur in certificates.
        return Err(CtError::Der("high-tag-number form"));
    }
    let (&first, rest) = rest.split_first().ok_or(CtError::Der("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 {
            return Err(CtError::Der("indefinite length"));
        }
        if n > 4 || rest.len() < n {
            return Err(CtError::Der("bad length"));
        }
        let (bytes, rest) = rest.split_at(n);
        if bytes[0] == 0 {
            return Err(CtError::Der("non-minimal length"));
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return Err(CtError::Der("non-minimal length"));
        }
        (len, rest)
    };
    if rest.len() < len {
        return Err(CtError::Der("truncated content"));
    }
    let (content, rest) = rest.split_at(len);
    let header_len = input.len() - rest.len() - len;
    Ok((
        Tlv {
            tag,
            content,
            raw: &input[..header_len + len],
        },
        rest,
    ))
}

/// The elements of a constructed value's contents.
pub fn children(mut content: &[u8]) -> Result<Vec<Tlv<'_>>, CtError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read_tlv(content)?;
        out.push(tlv);
        content = rest;
    }
    Ok(out)
}

fn expect_tag<'a>(tlv: Tlv<'a>, tag: u8, what: &'static str) -> Result<Tlv<'a>, CtError> {
    if tlv.tag == tag {
        Ok(tlv)
    } else {
        Err(CtError::Der(what))
    }
}

/// Encodes one element (definite, minimal length).
pub fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// The DER contents octets of an OBJECT IDENTIFIER given in dotted form.
pub fn encode_oid(dotted: &str) -> Result<Vec<u8>, CtError> {
    let bad = || CtError::InvalidOid(dotted.to_owned());
    let arcs = dotted
        .split('.')
        .map(|a| {
            if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            a.parse::<u64>().map_err(|_| bad())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (first, second) = match arcs.as_slice() {
        [first @ 0..=1, second @ 0..=39, ..] | [first @ 2, second, ..] => (*first, *second),
        _ => return Err(bad()),
    };
    let mut out = Vec::new();
    let head = second.checked_add(first * 40).ok_or_else(bad)?;
    for arc in std::iter::once(head).chain(arcs[2..].iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    Ok(out)
}

struct ParsedExtension<'a> {
    raw: &'a [u8],
    oid: &'a [u8],
    critical: bool,
    value: &'a [u8],
}

fn parse_extension(tlv: Tlv<'_>) -> Result<ParsedExtension<'_>, CtError> {
    let tlv = expect_tag(tlv, TAG_SEQUENCE, "extension is not a SEQUENCE")?;
    let (oid, critical, value) = match children(tlv.content)?.as_slice() {
        [oid, value] => (*oid, false, *value),
        [oid, critical, value] => {
            let critical = expect_tag(*critical, TAG_BOOLEAN, "bad extension critical flag")?;
            let critical = match critical.content {
                [0xff] => true,
                [0x00] => false,
                _ => return Err(CtError::Der("bad BOOLEAN")),
            };
            (*oid, critical, *value)
        }
        _ => return Err(CtError::Der("bad extension")),
    };
    Ok(ParsedExtension {
        raw: tlv.raw,
        oid: expect_tag(oid, TAG_OID, "extension OID missing")?.content,
        critical,
        value: expect_tag(value, TAG_OCTET_STRING, "extnValue is not an OCTET STRING")?.content,
    })
}

/// A certificate split into TBSCertificate fields, with its extensions parsed.
struct Tbs<'a> {
    fields: Vec<Tlv<'a>>,
    extensions: Vec<ParsedExtension<'a>>,
}

fn parse_tbs(cert_der: &[u8]) -> Result<Tbs<'_>, CtError> {
    let (cert, rest) = read_tlv(cert_der)?;
    if !rest.is_empty() {
        return Err(CtError::Der("trailing bytes after certificate"));
    }
    let cert = expect_tag(cert, TAG_SEQUENCE, "certificate is not a SEQUENCE")?;
    let [tbs, _sig_alg, _signature] = children(cert.content)?[..] else {
        return Err(CtError::Der("certificate does not have three fields"));
    };
    let tbs = expect_tag(tbs, TAG_SEQUENCE, "TBSCertificate is not a SEQUENCE")?;
    let fields = children(tbs.content)?;
    let mut extensions = Vec::new();
    if let Some(pos) = fields.iter().position(|f| f.tag == TAG_EXTENSIONS) {
        if pos + 1 != fields.len() {
            return Err(CtError::Der(
                "extensions are not the last TBSCertificate field",
            ));
        }
        let (seq, rest) = read_tlv(fields[pos].content)?;
        if !rest.is_empty() {
            return Err(CtError::Der("trailing bytes after extensions"));
        }
        let seq = expect_tag(seq, TAG_SEQUENCE, "extensions are not a SEQUENCE")?;
        for ext in children(seq.content)? {
            extensions.push(parse_extension(ext)?);
        }
    }
    Ok(Tbs { fields, extensions })
}

impl<'a> Tbs<'a> {
    /// The one extension with this OID; duplicates are an error (RFC 5280 §4.2).
    fn find(&self, oid: &str) -> Result<Option<(usize, &ParsedExtension<'a>)>, CtError> {
        let wanted = encode_oid(oid)?;
        let mut found = self
            .extensions
            .iter()
            .enumerate()
            .filter(|(_, e)| e.oid == wanted);
        let first = found.next();
        if found.next().is_some() {
            return Err(CtError::DuplicateExtension(oid.to_owned()));
        }
        Ok(first)
    }

    fn spki(&self) -> Result<Tlv<'a>, CtError> {
        // version? serial, signature, issuer, validity, subject, subjectPublicKeyInfo
        let index = if self.fields.first().is_some_and(|f| f.tag == TAG_VERSION) {
            6
        } else {
            5
        };
        let spki = self
            .fields
            .get(index)
            .ok_or(CtError::Der("TBSCertificate too short"))?;
        expect_tag(
            *spki,
            TAG_SEQUENCE,
            "SubjectPublicKeyInfo is not a SEQUENCE",
        )
    }
}

/// An extension as found in a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub critical: bool,
    /// The extnValue OCTET STRING contents.
    pub value: Vec<u8>,
}

/// The extension with this OID, if the certificate has it.
pub fn find_extension(cert_der: &[u8], oid: &str) -> Result<Option<Extension>, CtError> {
    let tbs = parse_tbs(cert_der)?;
    Ok(tbs.find(oid)?.map(|(_, e)| Extension {
        critical: e.critical,
        value: e.value.to_vec(),
    }))
}

/// Whether the certificate carries the CT poison; a poison that is not critical or not NULL
/// is an error rather than `false`, because such a certificate is neither a valid precert nor
/// safe to treat as a final certificate.
pub fn is_precertificate(cert_der: &[u8]) -> Result<bool, CtError> {
    match find_extension(cert_der, POISON_OID)? {
        None => Ok(false),
        Some(ext) if !ext.critical => Err(CtError::BadPoison("not critical")),
        Some(ext) if ext.value != POISON_EXTENSION_DER => Err(CtError::BadPoison("not NULL")),
        Some(_) => Ok(true),
    }
}

/// The DER TBSCertificate of `cert_der` with the extension `oid` removed and every enclosing
/// length re-encoded; all other bytes are copied unchanged. If it was the only extension the
/// `[3]` field is dropped, since RFC 5280 forbids an empty extensions SEQUENCE.
pub fn tbs_without_extension(cert_der: &[u8], oid: &str) -> Result<Vec<u8>, CtError> {
    let tbs = parse_tbs(cert_der)?;
    let (skip, _) = tbs
        .find(oid)?
        .ok_or_else(|| CtError::ExtensionNotFound(oid.to_owned()))?;
    let kept: Vec<u8> = tbs
        .extensions
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != skip)
        .flat_map(|(_, e)| e.raw.iter().copied())
        .collect();
    let mut content = Vec::new();
    for field in tbs.fields.iter().filter(|f| f.tag != TAG_EXTENSIONS) {
        content.extend_from_slice(field.raw);
    }
    if !kept.is_empty() {
        let mut seq = Vec::with_capacity(kept.len() + 4);
        write_tlv(&mut seq, TAG_SEQUENCE, &kept);
        write_tlv(&mut content, TAG_EXTENSIONS, &seq);
    }
    let mut out = Vec::with_capacity(content.len() + 4);
    write_tlv(&mut out, TAG_SEQUENCE, &content);
    Ok(out)
}

/// Whether a final certificate is the issued form of a precertificate (RFC 6962 §3.1): its TBS
/// minus the SCT list must equal the precert's TBS minus the poison.
pub fn tbs_matches_precert(final_der: &[u8], precert_der: &[u8]) -> Result<bool, CtError> {
    Ok(tbs_without_extension(final_der, crate::SCT_LIST_OID)?
        == tbs_without_extension(precert_der, POISON_OID)?)
}

/// The DER SubjectPublicKeyInfo of a certificate.
pub fn subject_public_key_info(cert_der: &[u8]) -> Result<&[u8], CtError> {
    Ok(parse_tbs(cert_der)?.spki()?.raw)
}

/// SHA-256 of the issuer's SubjectPublicKeyInfo: the `issuer_key_hash` of a PreCert entry.
pub fn issuer_key_hash(issuer_cert_der: &[u8]) -> Result<[u8; 32], CtError> {
    Ok(sha256(subject_public_key_info(issuer_cert_der)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_encoding_matches_known_der() {
        // 06 0a 2b 06 01 04 01 d6 79 02 04 03 is the poison OID as it appears in certificates.
        assert_eq!(
            encode_oid(POISON_OID).unwrap(),
            [0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03]
        );
        assert_eq!(encode_oid("2.999.3").unwrap(), [0x88, 0x37, 0x03]);
        for bad in ["", "1", "1.", "3.1", "1.40", "1.2.x", "1..2", "1.2.-3"] {
            assert!(encode_oid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tlv_lengths_round_trip_and_reject_non_der() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 70_000] {
            let content = vec![0xab; len];
            let mut out = Vec::new();
            write_tlv(&mut out, TAG_OCTET_STRING, &content);
            let (tlv, rest) = read_tlv(&out).unwrap();
            assert!(rest.is_empty());
            assert_eq!(tlv.content.len(), len);
            assert_eq!(tlv.raw, &out[..]);
        }
        assert!(read_tlv(&[0x04, 0x80]).is_err(), "indefinite");
        assert!(
            read_tlv(&[0x04, 0x81, 0x05, 0, 0, 0, 0, 0]).is_err(),
            "non-minimal"
        );
        assert!(read_tlv(&[0x04, 0x82, 0x00, 0x80]).is_err(), "leading zero");
        assert!(read_tlv(&[0x04, 0x05, 0x00]).is_err(), "truncated");
        assert!(read_tlv(&[0x1f, 0x01, 0x00]).is_err(), "high tag");
    }
}
