//! CAA evaluation, `dns::caa::evaluate` (RFC 8659 `issue`/`issuewild` and
//! the critical flag, RFC 8657 `accounturi` and `validationmethods`), with
//! the `issue` value parser behind it. The input is text lines:
//! identifier, account URI, validation method (empty: none), issuer
//! domains (comma-separated), then one record a line as `[!]tag value`
//! (`!`: critical; the value is raw bytes, as DNS delivers it).
//! Properties: the verdict does not depend on record order or tag case.
#![no_main]

use dns::CaaRecord;
use dns::caa::{CaaPolicy, CaaRequest, evaluate};
use libfuzzer_sys::fuzz_target;

fn record(line: &[u8]) -> CaaRecord {
    let (critical, line) = match line.strip_prefix(b"!") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (tag, value) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    CaaRecord::new(critical, String::from_utf8_lossy(tag), value)
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let mut text = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (identifier, account, method, issuers) = (text(), text(), text(), text());
    let records: Vec<CaaRecord> = lines.filter(|l| !l.is_empty()).map(record).collect();
    let policy = CaaPolicy {
        issuer_domains: issuers
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let req = CaaRequest {
        identifier: &identifier,
        account_uri: (!account.is_empty()).then_some(account.as_str()),
        validation_method: (!method.is_empty()).then_some(method.as_str()),
    };
    let allowed = evaluate(&records, &req, &policy).is_ok();
    if records.is_empty() {
        assert!(allowed, "no CAA records allow everyone");
    }
    let reversed: Vec<CaaRecord> = records.iter().rev().cloned().collect();
    assert_eq!(evaluate(&reversed, &req, &policy).is_ok(), allowed);
    let shouted: Vec<CaaRecord> = records
        .iter()
        .map(|r| CaaRecord::new(r.critical, r.tag.to_ascii_uppercase(), r.value.clone()))
        .collect();
    assert_eq!(evaluate(&shouted, &req, &policy).is_ok(), allowed);
});
