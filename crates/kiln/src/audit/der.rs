//! Just enough strict DER to audit a leaf certificate without OpenSSL's
//! decoder (~200 µs a certificate): its TBSCertificate and fields, its
//! extensions as bytes, the names, times and URLs the checks compare, and
//! the one rebuild RFC 6962 allows between a precertificate and its final
//! certificate (the poison swapped for the SCT list, in place).

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_VERSION: u8 = 0xa0;
const TAG_EXTENSIONS: u8 = 0xa3;
const TAG_BOOLEAN: u8 = 0x01;

/// OIDs, as the content bytes of their DER encoding.
pub mod oid {
    pub const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    pub const CRL_DP: &[u8] = &[0x55, 0x1d, 0x1f];
    pub const AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
    pub const CA_ISSUERS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    pub const CT_POISON: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03];
    pub const CT_SCT_LIST: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
}

/// The DER walker is `ct`'s (one strict reader for the CA and its audit),
/// with its errors as the audit's text.
pub use ct::{Tlv, write_tlv};

/// Reads one element (definite, minimal lengths only) and what follows it.
pub fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    ct::read_tlv(input).map_err(|e| e.to_string())
}

/// The elements of a constructed value's content.
pub fn children(content: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    ct::children(content).map_err(|e| e.to_string())
}

/// One extension of a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension<'a> {
    pub oid: &'a [u8],
    pub critical: bool,
    /// The extnValue OCTET STRING's content.
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

/// A leaf certificate, read as far as the audit needs.
#[derive(Clone, Debug)]
pub struct Cert<'a> {
    /// The certificate, whole.
    pub der: &'a [u8],
    /// The TBSCertificate, whole.
    pub tbs: &'a [u8],
    /// The serialNumber INTEGER's content octets.
    pub serial: &'a [u8],
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The SubjectPublicKeyInfo, whole.
    pub spki: &'a [u8],
    pub extensions: Vec<Extension<'a>>,
}

impl<'a> Cert<'a> {
    pub fn parse(der: &'a [u8]) -> Result<Cert<'a>, String> {
        let (cert, rest) = read_tlv(der)?;
        if cert.tag != TAG_SEQUENCE || !rest.is_empty() {
            return Err("not a single DER Certificate".into());
        }
        let parts = children(cert.content)?;
        let [tbs, _algorithm, _signature] = parts.as_slice() else {
            return Err("a Certificate has three fields".into());
        };
        let tbs = *tbs;
        if tbs.tag != TAG_SEQUENCE {
            return Err("TBSCertificate is not a SEQUENCE".into());
        }
        let fields = children(tbs.content)?;
        let offset = usize::from(fields.first().is_some_and(|f| f.tag == TAG_VERSION));
        let field = |i: usize, what: &str| {
            fields
                .get(offset + i)
                .copied()
                .ok_or_else(|| format!("TBSCertificate has no {what}"))
        };
        let serial = field(0, "serialNumber")?;
        if serial.tag != TAG_INTEGER {
            return Err("serialNumber is not an INTEGER".into());
        }
        let validity = children(field(3, "validity")?.content)?;
        let [not_before, not_after] = validity.as_slice() else {
            return Err("validity has two times".into());
        };
        let spki = field(5, "subjectPublicKeyInfo")?;
        let mut extensions = Vec::new();
        if let Some(last) = fields.last().filter(|f| f.tag == TAG_EXTENSIONS) {
            let (seq, rest) = read_tlv(last.content)?;
            if seq.tag != TAG_SEQUENCE || !rest.is_empty() {
                return Err("extensions are not one SEQUENCE".into());
            }
            for ext in children(seq.content)? {
                extensions.push(extension(ext)?);
            }
        }
        Ok(Cert {
            der,
            tbs: tbs.raw,
            serial: serial.content,
            not_before: time(not_before)?,
            not_after: time(not_after)?,
            spki: spki.raw,
            extensions,
        })
    }

    /// The one extension with `oid`; two are an error.
    pub fn extension(&self, oid: &[u8]) -> Result<Option<&Extension<'a>>, String> {
        let mut found = self.extensions.iter().filter(|e| e.oid == oid);
        let first = found.next();
        if found.next().is_some() {
            return Err(format!("two extensions {}", oid_text(oid)));
        }
        Ok(first)
    }

    /// The subjectAltName's dNSNames (lowercased) and iPAddresses (as
    /// text), in certificate order.
    pub fn san_names(&self) -> Result<Vec<String>, String> {
        let Some(san) = self.extension(oid::SUBJECT_ALT_NAME)? else {
            return Ok(Vec::new());
        };
        let (seq, _) = read_tlv(san.value)?;
        children(seq.content)?
            .into_iter()
            .map(|name| match name.tag {
                0x82 => std::str::from_utf8(name.content)
                    .map(str::to_ascii_lowercase)
                    .map_err(|_| "a dNSName is not ASCII".to_string()),
                0x87 => domain::ip_address::from_octets(name.content)
                    .map(|ip| ip.to_string())
                    .ok_or_else(|| "an iPAddress of neither 4 nor 16 octets".to_string()),
                tag => Err(format!("a subjectAltName of tag {tag:#04x}")),
            })
            .collect()
    }

    /// The AIA caIssuers URIs.
    pub fn ca_issuers_urls(&self) -> Result<Vec<String>, String> {
        let Some(aia) = self.extension(oid::AIA)? else {
            return Ok(Vec::new());
        };
        let (seq, _) = read_tlv(aia.value)?;
        let mut urls = Vec::new();
        for description in children(seq.content)? {
            if let [method, location] = children(description.content)?.as_slice()
                && method.tag == TAG_OID
                && method.content == oid::CA_ISSUERS
                && location.tag == 0x86
            {
                urls.push(String::from_utf8_lossy(location.content).into_owned());
            }
        }
        Ok(urls)
    }

    /// The URIs of the CRL distribution points' full names.
    pub fn crl_urls(&self) -> Result<Vec<String>, String> {
        let Some(dp) = self.extension(oid::CRL_DP)? else {
            return Ok(Vec::new());
        };
        let (seq, _) = read_tlv(dp.value)?;
        let mut urls = Vec::new();
        for point in children(seq.content)? {
            // DistributionPoint { [0] DistributionPointName { [0] fullName } }
            for name in children(point.content)?
                .into_iter()
                .filter(|n| n.tag == 0xa0)
            {
                for full in children(name.content)?
                    .into_iter()
                    .filter(|n| n.tag == 0xa0)
                {
                    for uri in children(full.content)?
                        .into_iter()
                        .filter(|n| n.tag == 0x86)
                    {
                        urls.push(String::from_utf8_lossy(uri.content).into_owned());
                    }
                }
            }
        }
        Ok(urls)
    }
}

fn extension(ext: Tlv<'_>) -> Result<Extension<'_>, String> {
    if ext.tag != TAG_SEQUENCE {
        return Err("an extension is not a SEQUENCE".into());
    }
    let parts = children(ext.content)?;
    let (oid, critical, value) = match parts.as_slice() {
        [oid, value] => (oid, false, value),
        [oid, critical, value] if critical.tag == TAG_BOOLEAN => {
            // DER: TRUE is 0xff, and FALSE (the default) is left out.
            if critical.content != [0xff] {
                return Err("an extension's critical flag is not DER TRUE".into());
            }
            (oid, true, value)
        }
        _ => return Err("an extension has neither two nor three fields".into()),
    };
    if oid.tag != TAG_OID || value.tag != TAG_OCTET_STRING {
        return Err("an extension's OID or extnValue is mistagged".into());
    }
    Ok(Extension {
        oid: oid.content,
        critical,
        value: value.content,
        raw: ext.raw,
    })
}

/// A UTCTime or GeneralizedTime `…Z` with seconds, as RFC 5280 requires,
/// in unix seconds.
pub fn time(tlv: &Tlv<'_>) -> Result<i64, String> {
    let text = std::str::from_utf8(tlv.content).map_err(|_| "a time is not ASCII")?;
    let digits = text.strip_suffix('Z').ok_or("a time is not in UTC (Z)")?;
    let (year, rest) = match (tlv.tag, digits.len()) {
        (TAG_UTC_TIME, 12) => {
            let yy: i64 = number(&digits[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (TAG_GENERALIZED_TIME, 14) => (number(&digits[..4])?, &digits[4..]),
        _ => return Err(format!("a time {text:?} is not RFC 5280's form")),
    };
    let [month, day, hour, minute, second] = [0, 2, 4, 6, 8].map(|i| number(&rest[i..i + 2]));
    let (month, day) = (month?, day?);
    let (hour, minute, second) = (hour?, minute?, second?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(format!("a time {text:?} is out of range"));
    }
    if second > 59 {
        return Err(format!("a time {text:?} is out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn number(digits: &str) -> Result<i64, String> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{digits:?} is not digits"));
    }
    digits
        .parse()
        .map_err(|_| format!("{digits:?} is not a number"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Lowercase hex, as the store keys serials.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The dotted form of an OID's content bytes, for messages.
pub fn oid_text(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The TBSCertificate RFC 6962 §3.1 says the final certificate must have:
/// `precert_tbs` (whole) with its poison extension replaced, at the same
/// place, by `sct_extension` (a whole Extension), every other byte kept.
pub fn tbs_with_poison_replaced(
    precert_tbs: &[u8],
    sct_extension: &[u8],
) -> Result<Vec<u8>, String> {
    let (tbs, rest) = read_tlv(precert_tbs)?;
    if tbs.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err("not a TBSCertificate".into());
    }
    let fields = children(tbs.content)?;
    let Some((last, before)) = fields.split_last().filter(|(l, _)| l.tag == TAG_EXTENSIONS) else {
        return Err("the precertificate has no extensions".into());
    };
    let (seq, _) = read_tlv(last.content)?;
    let mut list = Vec::with_capacity(seq.content.len() + sct_extension.len());
    let mut poisons = 0;
    for ext in children(seq.content)? {
        if extension(ext)?.oid == oid::CT_POISON {
            poisons += 1;
            list.extend_from_slice(sct_extension);
        } else {
            list.extend_from_slice(ext.raw);
        }
    }
    if poisons != 1 {
        return Err(format!(
            "the precertificate has {poisons} poison extensions"
        ));
    }
    let mut sequence = Vec::new();
    write_tlv(&mut sequence, TAG_SEQUENCE, &list);
    let mut content: Vec<u8> = before.iter().flat_map(|f| f.raw.iter().copied()).collect();
    write_tlv(&mut content, TAG_EXTENSIONS, &sequence);
    let mut out = Vec::with_capacity(content.len() + 4);
    write_tlv(&mut out, TAG_SEQUENCE, &content);
    Ok(out)
}

/// Where two TBSCertificates differ, for a message: the first field (or
/// extension) that does.
pub fn tbs_difference(expected: &[u8], actual: &[u8]) -> String {
    let fields = |tbs: &[u8]| -> Option<Vec<Vec<u8>>> {
        let (seq, _) = read_tlv(tbs).ok()?;
        let mut out = Vec::new();
        for field in children(seq.content).ok()? {
            if field.tag == TAG_EXTENSIONS {
                let (list, _) = read_tlv(field.content).ok()?;
                out.extend(children(list.content).ok()?.iter().map(|e| e.raw.to_vec()));
            } else {
                out.push(field.raw.to_vec());
            }
        }
        Some(out)
    };
    const NAMES: [&str; 7] = [
        "version",
        "serialNumber",
        "signature",
        "issuer",
        "validity",
        "subject",
        "subjectPublicKeyInfo",
    ];
    match (fields(expected), fields(actual)) {
        (Some(e), Some(a)) => {
            let at = e.iter().zip(&a).position(|(x, y)| x != y);
            match at {
                Some(i) if i < NAMES.len() => format!("its {} differs", NAMES[i]),
                Some(i) => format!("its extension #{} differs", i + 1 - NAMES.len()),
                None => format!("it has {} fields and extensions, not {}", a.len(), e.len()),
            }
        }
        _ => "it does not parse as a TBSCertificate".into(),
    }
}

#[cfg(test)]
#[path = "der_tests.rs"]
mod tests;
