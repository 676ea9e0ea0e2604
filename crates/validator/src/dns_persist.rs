//! dns-persist-01: one standing TXT record at `_validation-persist.{domain}`
//! names the CA (issuer-domain-name) and the ACME account allowed to issue
//! (draft-ietf-acme-dns-persist, BR §3.2.2.4.22).
//!
//! This is the -01 form Let's Encrypt/Boulder deploy: `accounturi` is the
//! plain account URL. The -02 hashed form is not accepted (nothing deploys
//! it yet, and it needs every key the account ever had).
//!
//! Records are untrusted: parse errors and details quote them only through
//! [`quote`], and details list a bounded number of records.

use dns::{Dns, DnsError};
use domain::{Identifier, Problem, ProblemKind};

use crate::challenge::{dns_problem, problem, quote};

/// The label under which the record lives.
pub const LABEL: &str = "_validation-persist";

/// Longest issuer-domain-name once normalised (draft §9.2).
const MAX_ISSUER_LEN: usize = 253;
/// Records described in one problem detail; the rest are only counted.
const MAX_REASONS: usize = 3;

/// The name queried for `domain`, the base name (no `*.`: a wildcard
/// identifier uses its base name's record).
pub fn record_name(domain: &str) -> String {
    format!("{LABEL}.{domain}")
}

/// One parsed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRecord {
    /// Normalised (see [`normalise_issuer_domain_name`]).
    pub issuer_domain_name: String,
    /// As received: compared byte for byte (RFC 3986 §6.2.1).
    pub account_uri: String,
    /// `policy=wildcard` (any case); any other policy value means absent.
    pub wildcard: bool,
    /// UNIX seconds after which the record must not be used.
    pub persist_until: Option<i64>,
}

/// A record that failed to parse, with its issuer when that part was usable:
/// only then can the failure be attributed to a CA.
#[derive(Debug)]
struct ParseError {
    issuer: Option<String>,
    reason: String,
}

/// Parses one TXT value (RFC 8659 `issue-value`; draft §3-4):
/// - unknown tags are ignored; tags match case-insensitively (as Boulder);
/// - a repeated `accounturi`, `policy` or `persistUntil` is malformed;
/// - `accounturi` is mandatory and non-empty;
/// - `persistUntil` must be a base-10 integer;
/// - a `policy` other than `wildcard` (any case) counts as absent;
/// - Boulder's extra strictness: an empty parameter (so a trailing `;`), no
///   `=`, an empty tag, or a value holding whitespace, control or non-ASCII
///   characters is malformed.
///
/// `Err` is a short human-readable reason; it quotes received text.
pub fn parse(txt: &str) -> Result<PersistRecord, String> {
    parse_record(txt).map_err(|e| e.reason)
}

/// Received text for a detail: escaped and bounded.
fn q(s: &str) -> String {
    quote(s.as_bytes())
}

/// WSP of RFC 5234: space and tab only.
fn trim_wsp(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn parse_record(txt: &str) -> Result<PersistRecord, ParseError> {
    let mut parts = txt.split(';');
    // `split` always yields at least one piece.
    let raw_issuer = trim_wsp(parts.next().unwrap_or_default());
    let Some(issuer) = normalise_issuer_domain_name(raw_issuer) else {
        return Err(ParseError {
            issuer: None,
            reason: format!("unusable issuer-domain-name {}", q(raw_issuer)),
        });
    };
    let fail = |reason: String| ParseError {
        issuer: Some(issuer.clone()),
        reason,
    };

    let mut account_uri = None;
    let mut policy = None;
    let mut persist_until = None;
    for raw in parts {
        let param = trim_wsp(raw);
        if param.is_empty() {
            return Err(fail("empty parameter or trailing ';'".into()));
        }
        let Some((tag, value)) = param.split_once('=') else {
            return Err(fail(format!("parameter {} is not tag=value", q(param))));
        };
        let (tag, value) = (trim_wsp(tag), trim_wsp(value));
        if tag.is_empty() {
            return Err(fail(format!("parameter {} has an empty tag", q(param))));
        }
        // RFC 8659 value: printable ASCII except ';' (already split off).
        // Checked for unknown tags too, as Boulder does.
        if !value.bytes().all(|b| matches!(b, 0x21..=0x7e)) {
            return Err(fail(format!(
                "value {} of {} has whitespace, control or non-ASCII characters",
                q(value),
                q(tag)
            )));
        }
        let slot = match tag.to_ascii_lowercase().as_str() {
            "accounturi" => &mut account_uri,
            "policy" => &mut policy,
            "persistuntil" => &mut persist_until,
            // Draft §4.1, BR §3.2.2.4.22 item 5: unknown tags MUST be ignored.
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(fail(format!("duplicate parameter {}", q(tag))));
        }
    }

    let account_uri = match account_uri {
        None => return Err(fail("missing mandatory accounturi".into())),
        Some("") => return Err(fail("empty accounturi".into())),
        Some(uri) => uri.to_string(),
    };
    let persist_until = match persist_until {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| fail(format!("persistUntil {} is not a base-10 integer", q(v))))?,
        ),
    };
    Ok(PersistRecord {
        issuer_domain_name: issuer,
        account_uri,
        wildcard: policy.is_some_and(|p| p.eq_ignore_ascii_case("wildcard")),
        persist_until,
    })
}

/// Draft §9.2 for A-labels: lowercase, strip one trailing dot, at most 253
/// octets. `None` if unusable: empty, non-ASCII (U-labels would need IDNA
/// processing, and the CA's own names are A-labels anyway), or not the
/// RFC 8659 `issuer-domain-name` grammar (letter/digit labels, inner hyphens).
pub fn normalise_issuer_domain_name(raw: &str) -> Option<String> {
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (name.len() <= MAX_ISSUER_LEN && name.split('.').all(label_ok)).then_some(name)
}

/// What a record must say for this validation.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The CA's own issuer domain names, already normalised.
    pub issuer_domain_names: &'a [String],
    /// The requesting account's URL, compared byte for byte.
    pub account_uri: &'a str,
    /// The identifier is `*.{domain}`: the record needs `policy=wildcard`.
    pub wildcard: bool,
    /// The time of the check, UNIX seconds.
    pub now_secs: i64,
}

/// Why a record for our issuer does not authorise this request.
fn check(record: &PersistRecord, expected: &Expected<'_>) -> Result<(), String> {
    if record.account_uri != expected.account_uri {
        return Err(format!(
            "accounturi {} names another account (expected {})",
            q(&record.account_uri),
            expected.account_uri
        ));
    }
    // BR §3.2.2.4.22: usable up to and including persistUntil.
    if let Some(until) = record.persist_until
        && expected.now_secs > until
    {
        return Err(format!(
            "persistUntil {until} has passed (now {})",
            expected.now_secs
        ));
    }
    if expected.wildcard && !record.wildcard {
        return Err("wildcard not permitted: the record has no policy=wildcard".into());
    }
    Ok(())
}

/// Up to [`MAX_REASONS`] reasons, then a count of the rest.
fn summarise(reasons: &[String]) -> String {
    let mut s = reasons[..reasons.len().min(MAX_REASONS)].join("; ");
    if reasons.len() > MAX_REASONS {
        s.push_str(&format!("; and {} more", reasons.len() - MAX_REASONS));
    }
    s
}

/// Decides from the TXT values at [`record_name`] (draft §6; Boulder's order):
/// records for other CAs are skipped (they may sit alongside ours, one CA per
/// record), as are records whose issuer part does not parse at all (they
/// cannot be attributed). The first record for our issuer that parses and
/// passes [`check`] wins. Otherwise: any record for our issuer that is
/// malformed gives `malformed`, else any failed check gives `unauthorized`,
/// else (none for our issuer) `unauthorized` naming our issuer names.
pub fn evaluate(
    domain: &str,
    txts: &[String],
    expected: &Expected<'_>,
) -> Result<PersistRecord, Problem> {
    let name = record_name(domain);
    if expected.issuer_domain_names.is_empty() {
        // Our misconfiguration, not the client's: no record could ever match.
        tracing::error!(domain, "dns-persist-01 without issuer domain names");
        return Err(Problem::internal().for_identifier(Identifier::from_authz_value(domain)));
    }
    let ours = |issuer: &str| expected.issuer_domain_names.iter().any(|n| n == issuer);
    let mut malformed = Vec::new();
    let mut refused = Vec::new();
    for txt in txts {
        match parse_record(txt) {
            Ok(record) if ours(&record.issuer_domain_name) => match check(&record, expected) {
                Ok(()) => return Ok(record),
                Err(why) => {
                    refused.push(format!("record for {}: {why}", record.issuer_domain_name))
                }
            },
            Ok(_) => {}
            Err(ParseError {
                issuer: Some(issuer),
                reason,
            }) if ours(&issuer) => malformed.push(format!("record for {issuer}: {reason}")),
            Err(_) => {}
        }
    }
    if !malformed.is_empty() {
        return Err(problem(
            ProblemKind::Malformed,
            domain,
            format!("malformed TXT record at {name}: {}", summarise(&malformed)),
        ));
    }
    if !refused.is_empty() {
        return Err(problem(
            ProblemKind::Unauthorized,
            domain,
            format!(
                "no TXT record at {name} authorizes this request: {}",
                summarise(&refused)
            ),
        ));
    }
    let first = txts.first().map(|t| q(t)).unwrap_or_default();
    Err(problem(
        ProblemKind::Unauthorized,
        domain,
        format!(
            "none of the {} TXT record(s) at {name} names this CA's issuer domain names ({}); first: {first}",
            txts.len(),
            expected.issuer_domain_names.join(", ")
        ),
    ))
}

/// Looks up TXT at [`record_name`]`(domain)` and [`evaluate`]s the answers.
/// `domain` is the base name. CNAMEs are followed as the resolver does (BR
/// §3.2.2.4.22 allows it; the validated name stays `domain`).
pub async fn validate(
    dns: &Dns,
    domain: &str,
    expected: &Expected<'_>,
) -> Result<PersistRecord, Problem> {
    let name = record_name(domain);
    let txts = dns.lookup_txt(&name).await.map_err(|e| match e {
        // Draft §6 / Boulder: no record is an authorization failure.
        DnsError::NoRecords(_) => problem(
            ProblemKind::Unauthorized,
            domain,
            format!("no TXT record at {name}"),
        ),
        e => dns_problem(domain, &format!("TXT lookup at {name} failed"), &e),
    })?;
    evaluate(domain, &txts, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "https://ca.example/acct/123";
    const DOMAIN: &str = "example.com";
    const EXAMPLE: &str = "authority.example; accounturi=https://ca.example/acct/123; policy=wildcard; persistUntil=1767225600";

    fn rec(account: &str, wildcard: bool, until: Option<i64>) -> PersistRecord {
        PersistRecord {
            issuer_domain_name: "authority.example".into(),
            account_uri: account.into(),
            wildcard,
            persist_until: until,
        }
    }

    fn malformed(txt: &str, needle: &str) {
        let err = parse(txt).expect_err(txt);
        assert!(err.contains(needle), "{txt}: {err}");
    }

    #[test]
    fn the_spec_example_parses() {
        assert_eq!(parse(EXAMPLE), Ok(rec(ACCT, true, Some(1767225600))));
        assert_eq!(record_name(DOMAIN), "_validation-persist.example.com");
    }

    #[test]
    fn whitespace_around_issuer_separators_and_equals() {
        let txt = " \tauthority.example \t;\t accounturi \t= \thttps://ca.example/acct/123 ; policy = wildcard\t";
        assert_eq!(parse(txt), Ok(rec(ACCT, true, None)));
    }

    #[test]
    fn unknown_tags_are_ignored_even_repeated() {
        let txt = "authority.example; foo=bar; accounturi=https://ca.example/acct/123; foo=baz";
        assert_eq!(parse(txt), Ok(rec(ACCT, false, None)));
    }

    #[test]
    fn duplicate_known_tags_are_malformed() {
        let base = "authority.example; accounturi=https://ca.example/acct/123";
        malformed(&format!("{base}; accountURI=x"), "duplicate");
        malformed(
            &format!("{base}; policy=wildcard; policy=wildcard"),
            "duplicate",
        );
        malformed(
            &format!("{base}; persistUntil=1; persistuntil=2"),
            "duplicate",
        );
    }

    #[test]
    fn accounturi_is_mandatory_and_non_empty() {
        malformed("authority.example", "missing");
        malformed("authority.example; policy=wildcard", "missing");
        malformed("authority.example; accounturi=", "empty accounturi");
        malformed("authority.example; accounturi= \t", "empty accounturi");
    }

    #[test]
    fn persist_until_must_be_an_integer() {
        let base = "authority.example; accounturi=https://ca.example/acct/123";
        for bad in ["1.5", "soon", "", "0x10", "99999999999999999999"] {
            malformed(&format!("{base}; persistUntil={bad}"), "base-10");
        }
        assert_eq!(
            parse(&format!("{base}; PersistUntil=1700000000")),
            Ok(rec(ACCT, false, Some(1_700_000_000)))
        );
    }

    #[test]
    fn policy_is_case_insensitive_and_other_values_mean_absent() {
        let base = "authority.example; accounturi=https://ca.example/acct/123";
        assert!(parse(&format!("{base}; policy=WILDCARD")).unwrap().wildcard);
        assert!(parse(&format!("{base}; POLICY=Wildcard")).unwrap().wildcard);
        assert!(!parse(&format!("{base}; policy=other")).unwrap().wildcard);
        assert!(!parse(&format!("{base}; policy=")).unwrap().wildcard);
    }

    #[test]
    fn boulder_strictness() {
        let base = "authority.example; accounturi=https://ca.example/acct/123";
        malformed(&format!("{base};"), "trailing");
        malformed(&format!("{base}; ;policy=wildcard"), "trailing");
        malformed(&format!("{base}; policy"), "tag=value");
        malformed(&format!("{base}; =x"), "empty tag");
        malformed(&format!("{base}; foo=a b"), "whitespace");
        malformed(&format!("{base}; foo=a\u{1}"), "control");
        malformed(&format!("{base}; foo=\u{e9}"), "non-ASCII");
        malformed(
            "authority.example; accounturi=https://ca.example/acct/\u{fffd}",
            "non-ASCII",
        );
    }

    #[test]
    fn issuer_names_are_normalised() {
        let txt = "Authority.EXAMPLE.; accounturi=https://ca.example/acct/123";
        assert_eq!(parse(txt), Ok(rec(ACCT, false, None)));
        assert_eq!(
            normalise_issuer_domain_name("CA.Example."),
            Some("ca.example".into())
        );
        assert_eq!(
            normalise_issuer_domain_name("xn--bcher-kva.example"),
            Some("xn--bcher-kva.example".into())
        );
        let long = format!("{}.example", [&"a".repeat(63)[..]; 4].join("."));
        for bad in [
            "",
            ".",
            "a..b",
            "a.b..",
            "bücher.example",
            "ca example",
            "-a.b",
            "a_b.c",
            &long,
        ] {
            assert_eq!(normalise_issuer_domain_name(bad), None, "{bad:?}");
        }
        assert!(parse("; accounturi=x").is_err());
        assert!(parse(&format!("{long}; accounturi=x")).is_err());
    }

    #[test]
    fn parse_errors_are_bounded() {
        let huge = format!("authority.example; persistUntil={}", "9".repeat(100_000));
        assert!(parse(&huge).unwrap_err().len() < 200);
    }

    fn names() -> Vec<String> {
        vec!["authority.example".into(), "ca.example".into()]
    }

    fn eval(txts: &[&str], wildcard: bool, now_secs: i64) -> Result<PersistRecord, Problem> {
        let txts: Vec<String> = txts.iter().map(|t| t.to_string()).collect();
        let names = names();
        let expected = Expected {
            issuer_domain_names: &names,
            account_uri: ACCT,
            wildcard,
            now_secs,
        };
        evaluate(DOMAIN, &txts, &expected)
    }

    #[track_caller]
    fn refused(r: Result<PersistRecord, Problem>, kind: ProblemKind, needle: &str) {
        let p = r.unwrap_err();
        assert_eq!(p.kind, kind, "{p:?}");
        assert!(p.detail.contains(needle), "{}", p.detail);
        assert_eq!(p.identifier, Some(Identifier::dns(DOMAIN)));
    }

    const FOREIGN: &str = "other-ca.example; accounturi=https://other.example/a/1";
    const OURS: &str = "authority.example; accounturi=https://ca.example/acct/123";

    #[test]
    fn a_foreign_record_sits_alongside_ours() {
        assert_eq!(eval(&[FOREIGN, OURS], false, 0), Ok(rec(ACCT, false, None)));
        // Our second issuer name matches too.
        let second = "CA.example; accounturi=https://ca.example/acct/123";
        assert_eq!(
            eval(&[second], false, 0).unwrap().issuer_domain_name,
            "ca.example"
        );
    }

    #[test]
    fn another_account_is_unauthorized() {
        let other = "authority.example; accounturi=https://ca.example/acct/1234";
        refused(
            eval(&[other], false, 0),
            ProblemKind::Unauthorized,
            "another account",
        );
        // Simple string comparison: no case-folding.
        let upper = "authority.example; accounturi=HTTPS://ca.example/acct/123";
        refused(
            eval(&[upper], false, 0),
            ProblemKind::Unauthorized,
            "another account",
        );
    }

    #[test]
    fn persist_until_is_inclusive() {
        let txt = format!("{OURS}; persistUntil=1000");
        assert!(eval(&[&txt], false, 1000).is_ok());
        assert!(eval(&[&txt], false, 999).is_ok());
        refused(
            eval(&[&txt], false, 1001),
            ProblemKind::Unauthorized,
            "has passed",
        );
    }

    #[test]
    fn a_wildcard_needs_the_policy() {
        refused(
            eval(&[OURS], true, 0),
            ProblemKind::Unauthorized,
            "wildcard not permitted",
        );
        let other = format!("{OURS}; policy=other");
        refused(
            eval(&[&other], true, 0),
            ProblemKind::Unauthorized,
            "wildcard",
        );
        let with = format!("{OURS}; policy=wildcard");
        assert!(eval(&[&with], true, 0).unwrap().wildcard);
        // The first passing record wins, whatever failed before it.
        assert!(eval(&[OURS, &with], true, 0).is_ok());
    }

    #[test]
    fn malformed_for_our_issuer_beats_unauthorized() {
        let other = "authority.example; accounturi=https://ca.example/acct/9";
        let broken = "authority.example; accounturi=https://ca.example/acct/123;";
        refused(
            eval(&[other, broken], false, 0),
            ProblemKind::Malformed,
            "trailing",
        );
        // A malformed record for another CA is none of our business.
        let foreign_broken = "other-ca.example; accounturi=";
        refused(
            eval(&[other, foreign_broken], false, 0),
            ProblemKind::Unauthorized,
            "another account",
        );
        // A record that parses and passes still wins over a malformed one.
        assert!(eval(&[broken, OURS], false, 0).is_ok());
    }

    #[test]
    fn only_foreign_or_unattributable_records_are_unauthorized() {
        let unattributable = "authority example; accounturi=https://ca.example/acct/123";
        let r = eval(&[FOREIGN, unattributable], false, 0);
        refused(
            r,
            ProblemKind::Unauthorized,
            "authority.example, ca.example",
        );
    }

    #[test]
    fn details_are_bounded() {
        let junk = format!("authority.example; accounturi={}", "x".repeat(5000));
        let txts: Vec<&str> = std::iter::repeat_n(junk.as_str(), 50).collect();
        let p = eval(&txts, false, 0).unwrap_err();
        assert!(p.detail.len() < 1000, "{}", p.detail.len());
        assert!(p.detail.contains("and 47 more"), "{}", p.detail);
    }

    #[test]
    fn no_issuer_names_is_our_fault() {
        let expected = Expected {
            issuer_domain_names: &[],
            account_uri: ACCT,
            wildcard: false,
            now_secs: 0,
        };
        let p = evaluate(DOMAIN, &[OURS.to_string()], &expected).unwrap_err();
        assert_eq!(p.kind, ProblemKind::ServerInternal);
    }

    #[tokio::test]
    async fn validate_against_a_dns_server() {
        let server = dns::testing::TestDnsServer::start().await;
        let dns = server.dns();
        let names = names();
        let expected = Expected {
            issuer_domain_names: &names,
            account_uri: ACCT,
            wildcard: false,
            now_secs: 0,
        };
        let r = validate(&dns, DOMAIN, &expected).await;
        refused(
            r,
            ProblemKind::Unauthorized,
            "no TXT record at _validation-persist.example.com",
        );

        server.set_txt(&record_name(DOMAIN), FOREIGN).await;
        server.set_txt(&record_name(DOMAIN), OURS).await;
        assert_eq!(
            validate(&dns, DOMAIN, &expected).await,
            Ok(rec(ACCT, false, None))
        );

        server.set_servfail(&record_name(DOMAIN));
        let r = validate(&dns, DOMAIN, &expected).await;
        refused(r, ProblemKind::Dns, "temporary");
    }
}
