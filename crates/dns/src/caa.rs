//! CAA policy: RFC 8659 (tree climbing, `issue`/`issuewild`, critical flag)
//! and RFC 8657 (`accounturi`, `validationmethods`).
//!
//! [`evaluate`] is pure; [`check`] and [`check_all`] do the lookups.

use domain::{Identifier, Problem, ProblemKind};

use crate::{CaaRecord, Dns};

/// Kiln's side of the CAA decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaaPolicy {
    /// Kiln's own issuer domain names, from config, e.g. `["kiln.test"]`.
    pub issuer_domains: Vec<String>,
}

/// One identifier to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaaRequest<'a> {
    /// A DNS name, possibly a wildcard (`*.a.com`).
    pub identifier: &'a str,
    /// The requesting account's URI, for `accounturi` (RFC 8657 §3).
    pub account_uri: Option<&'a str>,
    /// The ACME method that validated the name (`http-01`, `dns-01`, …),
    /// for `validationmethods` (RFC 8657 §4); `None` when not known, which
    /// a record limiting the methods refuses.
    pub validation_method: Option<&'a str>,
}

/// Property tags Kiln understands; a critical tag outside this list forbids
/// issuance (RFC 8659 §4.1).
const KNOWN_TAGS: &[&str] = &[
    "issue",
    "issuewild",
    "iodef",
    "contactemail",
    "contactphone",
];

/// Longest piece of record data quoted back in a problem detail.
const QUOTE_MAX: usize = 80;

/// Decides whether the relevant RRset `records` (already found by tree
/// climbing) lets Kiln issue for `req`. `Err` says why not.
pub fn evaluate(records: &[CaaRecord], req: &CaaRequest, policy: &CaaPolicy) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    if let Some(r) = records
        .iter()
        .find(|r| r.critical && !KNOWN_TAGS.iter().any(|t| r.tag.eq_ignore_ascii_case(t)))
    {
        return Err(format!(
            "a CAA record has the unknown property tag {} marked critical",
            quote(r.tag.as_bytes())
        ));
    }

    let with_tag = |tag: &str| -> Vec<&CaaRecord> {
        records
            .iter()
            .filter(|r| r.tag.eq_ignore_ascii_case(tag))
            .collect()
    };
    let wildcard = req.identifier.starts_with("*.");
    // RFC 8659 §4.3: issuewild wins for wildcards if present, and is ignored otherwise.
    let (tag, relevant) = match (wildcard, with_tag("issuewild")) {
        (true, wild) if !wild.is_empty() => ("issuewild", wild),
        _ => ("issue", with_tag("issue")),
    };
    // RFC 8659 §4: a set with no issuance-restricting property (e.g. only iodef) does not restrict.
    if relevant.is_empty() {
        return Ok(());
    }

    let mut reasons = Vec::new();
    for record in relevant {
        match grants(record, req, policy) {
            Ok(()) => return Ok(()),
            Err(why) => reasons.push(why),
        }
    }
    Err(format!(
        "CAA {tag} records do not authorize this CA: {}",
        reasons.join("; ")
    ))
}

/// Whether one `issue`/`issuewild` record authorizes Kiln for `req`.
fn grants(record: &CaaRecord, req: &CaaRequest, policy: &CaaPolicy) -> Result<(), String> {
    let shown = quote(&record.value);
    let value = IssueValue::parse(&record.value)
        .map_err(|why| format!("malformed value {shown} ({why}) authorizes no one"))?;
    let Some(issuer) = value.issuer else {
        return Err(format!("{shown} authorizes no CA"));
    };
    if !policy
        .issuer_domains
        .iter()
        .any(|ours| ours.eq_ignore_ascii_case(issuer))
    {
        return Err(format!("{shown} authorizes another CA"));
    }

    let param = |name: &str| -> Result<Option<&str>, String> {
        let mut found = value
            .params
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some((_, v)), None) => Ok(Some(*v)),
            // Ambiguous: refuse rather than pick one.
            (Some(_), Some(_)) => Err(format!("{shown} repeats the {name} parameter")),
        }
    };
    if let Some(want) = param("accounturi")?
        && req.account_uri != Some(want)
    {
        return Err(format!("{shown} is limited to another account"));
    }
    // RFC 8657 §4. An unknown method fails closed: a record that limits
    // the methods grants nothing to a validation it cannot place.
    if let Some(methods) = param("validationmethods")? {
        let Some(ours) = req.validation_method else {
            return Err(format!(
                "{shown} limits the validation methods and the one used is not known"
            ));
        };
        if !methods.split(',').any(|m| m == ours) {
            return Err(format!("{shown} does not allow validation method {ours}"));
        }
    }
    Ok(())
}

/// An `issue`/`issuewild` value per the RFC 8659 §4.2 ABNF:
/// `*WSP [issuer-domain-name *WSP] [";" *WSP [parameters *WSP]]`.
#[derive(Debug, PartialEq, Eq)]
struct IssueValue<'a> {
    issuer: Option<&'a str>,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> IssueValue<'a> {
    fn parse(raw: &'a [u8]) -> Result<Self, &'static str> {
        let text = std::str::from_utf8(raw).map_err(|_| "not ASCII")?;
        if !text.is_ascii() {
            return Err("not ASCII");
        }
        let wsp = |c: char| c == ' ' || c == '\t';
        let (name, rest) = match text.split_once(';') {
            Some((name, rest)) => (name, Some(rest)),
            None => (text, None),
        };
        let name = name.trim_matches(wsp);
        let issuer = if name.is_empty() {
            None
        } else if name.split('.').all(is_label) {
            Some(name)
        } else {
            return Err("bad issuer domain name");
        };
        let mut params = Vec::new();
        // Empty segments (a trailing ";") are tolerated: they say nothing.
        for segment in rest.into_iter().flat_map(|r| r.split(';')) {
            let segment = segment.trim_matches(wsp);
            if segment.is_empty() {
                continue;
            }
            let (key, val) = segment.split_once('=').ok_or("parameter without '='")?;
            let (key, val) = (key.trim_matches(wsp), val.trim_matches(wsp));
            if !is_label(key) {
                return Err("bad parameter tag");
            }
            if !val.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b';') {
                return Err("bad parameter value");
            }
            params.push((key, val));
        }
        Ok(IssueValue { issuer, params })
    }
}

/// `(ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT))`: used for labels and parameter tags.
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Record data for a problem detail: escaped and bounded, since it comes
/// from whoever controls the zone.
fn quote(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut shown: String = text.chars().take(QUOTE_MAX).collect();
    if text.chars().count() > QUOTE_MAX {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// RFC 8659 §3 tree climbing for one identifier, then [`evaluate`].
///
/// Problems: kind `caa` when CAA forbids issuance, kind `dns` when a lookup
/// on the path failed (SERVFAIL, timeout): those may succeed on retry.
pub async fn check(dns: &Dns, req: &CaaRequest<'_>, policy: &CaaPolicy) -> Result<(), Problem> {
    let identifier = || Identifier::dns(req.identifier);
    let base = req
        .identifier
        .strip_prefix("*.")
        .unwrap_or(req.identifier)
        .trim_end_matches('.')
        .to_ascii_lowercase();

    let mut relevant = Vec::new();
    let mut at = None;
    for name in ancestors(&base) {
        match dns.lookup_caa(name).await {
            Ok(records) if records.is_empty() => continue,
            Ok(records) => {
                relevant = records;
                at = Some(name);
                break;
            }
            Err(e) => {
                tracing::info!(identifier = req.identifier, error = %e, "CAA lookup failed");
                return Err(Problem::new(
                    ProblemKind::Dns,
                    format!(
                        "CAA lookup for {} failed while checking {}: {e}; this may be temporary, please retry",
                        name, req.identifier
                    ),
                )
                .for_identifier(identifier()));
            }
        }
    }

    evaluate(&relevant, req, policy).map_err(|why| {
        let at = at.unwrap_or(base.as_str());
        Problem::new(
            ProblemKind::Caa,
            format!(
                "CAA record for {at} prevents issuance for {}: {why}",
                req.identifier
            ),
        )
        .for_identifier(identifier())
    })
}

/// `a.b.c` → `a.b.c`, `b.c`, `c` (the root is never asked).
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(name), |n| n.split_once('.').map(|(_, parent)| parent))
        .filter(|n| !n.is_empty())
}

/// Checks every identifier (concurrently, each with its own lookups). On
/// failure returns one problem whose subproblems name every failing
/// identifier; its kind is `caa` if any identifier is forbidden, else `dns`.
pub async fn check_all(
    dns: &Dns,
    reqs: &[CaaRequest<'_>],
    policy: &CaaPolicy,
) -> Result<(), Problem> {
    let results = futures::future::join_all(reqs.iter().map(|req| check(dns, req, policy))).await;
    let failures: Vec<Problem> = results.into_iter().filter_map(Result::err).collect();
    if failures.is_empty() {
        return Ok(());
    }
    let kind = if failures.iter().any(|p| p.kind == ProblemKind::Caa) {
        ProblemKind::Caa
    } else {
        ProblemKind::Dns
    };
    let names: Vec<&str> = failures
        .iter()
        .filter_map(|p| p.identifier.as_ref().map(|i| i.value.as_str()))
        .collect();
    let detail = format!(
        "CAA check failed for {} of {} identifiers: {}",
        failures.len(),
        reqs.len(),
        names.join(", ")
    );
    Err(Problem::new(kind, detail).with_subproblems(failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(critical: bool, tag: &str, value: &str) -> CaaRecord {
        CaaRecord::new(critical, tag, value.as_bytes())
    }

    #[test]
    fn evaluate_table() {
        let policy = CaaPolicy {
            issuer_domains: vec!["kiln.test".into()],
        };
        let acct = "https://kiln.test/acme/acct/1";
        let plain = CaaRequest {
            identifier: "a.com",
            account_uri: Some(acct),
            validation_method: Some("http-01"),
        };
        let wild = CaaRequest {
            identifier: "*.a.com",
            validation_method: Some("dns-01"),
            ..plain
        };
        let no_acct = CaaRequest {
            account_uri: None,
            ..plain
        };
        let no_method = CaaRequest {
            validation_method: None,
            ..plain
        };
        let persist = CaaRequest {
            validation_method: Some("dns-persist-01"),
            ..plain
        };
        let account_label = CaaRequest {
            validation_method: Some("dns-account-01"),
            ..plain
        };

        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<CaaRecord>, CaaRequest, bool)> = vec![
            ("no records", vec![], plain, true),
            ("issue us", vec![rec(false, "issue", "kiln.test")], plain, true),
            ("issue other CA", vec![rec(false, "issue", "other.ca")], plain, false),
            ("one of several", vec![rec(false, "issue", "other.ca"), rec(false, "issue", "kiln.test")], plain, true),
            ("only iodef", vec![rec(false, "iodef", "mailto:x@a.com")], plain, true),
            ("issuewild ignored for non-wildcard", vec![rec(false, "issuewild", "other.ca")], plain, true),
            ("issuewild us, issue other: non-wildcard", vec![rec(false, "issuewild", "kiln.test"), rec(false, "issue", "other.ca")], plain, false),
            ("issuewild us, issue other: wildcard", vec![rec(false, "issuewild", "kiln.test"), rec(false, "issue", "other.ca")], wild, true),
            ("issuewild other, issue us: wildcard", vec![rec(false, "issuewild", "other.ca"), rec(false, "issue", "kiln.test")], wild, false),
            ("issuewild ';' forbids wildcard", vec![rec(false, "issuewild", ";"), rec(false, "issue", "kiln.test")], wild, false),
            ("issue used for wildcard without issuewild", vec![rec(false, "issue", "kiln.test")], wild, true),
            ("issue other, wildcard without issuewild", vec![rec(false, "issue", "other.ca")], wild, false),
            ("critical unknown tag", vec![rec(true, "tbs", "x"), rec(false, "issue", "kiln.test")], plain, false),
            ("non-critical unknown tag ignored", vec![rec(false, "tbs", "x"), rec(false, "issue", "kiln.test")], plain, true),
            ("critical known tag fine", vec![rec(true, "issue", "kiln.test")], plain, true),
            ("accounturi match", vec![rec(false, "issue", &format!("kiln.test; accounturi={acct}"))], plain, true),
            ("accounturi mismatch", vec![rec(false, "issue", "kiln.test; accounturi=https://kiln.test/acme/acct/2")], plain, false),
            ("accounturi without account", vec![rec(false, "issue", &format!("kiln.test; accounturi={acct}"))], no_acct, false),
            ("accounturi repeated", vec![rec(false, "issue", &format!("kiln.test; accounturi={acct}; accounturi={acct}"))], plain, false),
            ("validationmethods match", vec![rec(false, "issue", "kiln.test; validationmethods=dns-01,http-01")], plain, true),
            ("validationmethods mismatch", vec![rec(false, "issue", "kiln.test; validationmethods=dns-01")], plain, false),
            ("validationmethods, method unknown: fails closed", vec![rec(false, "issue", "kiln.test; validationmethods=dns-01")], no_method, false),
            ("no validationmethods, method unknown", vec![rec(false, "issue", "kiln.test")], no_method, true),
            ("validationmethods dns-persist-01", vec![rec(false, "issue", "kiln.test; validationmethods=dns-persist-01")], persist, true),
            ("validationmethods dns-01 is not dns-account-01", vec![rec(false, "issue", "kiln.test; validationmethods=dns-01")], account_label, false),
            ("both params", vec![rec(false, "issue", &format!("kiln.test;accounturi={acct};validationmethods=http-01"))], plain, true),
            ("unknown parameter ignored", vec![rec(false, "issue", "kiln.test; policy=ev")], plain, true),
            ("whitespace allowed", vec![rec(false, "issue", " kiln.test ;  accounturi = https://kiln.test/acme/acct/1 ")], plain, true),
            ("malformed domain", vec![rec(false, "issue", "kiln..test")], plain, false),
            ("malformed: space in name", vec![rec(false, "issue", "kiln.test extra")], plain, false),
            ("malformed parameter", vec![rec(false, "issue", "kiln.test; accounturi")], plain, false),
            ("malformed non-ASCII", vec![CaaRecord::new(false, "issue", b"kiln.test\xff".to_vec())], plain, false),
            ("malformed one, good other", vec![rec(false, "issue", "kiln..test"), rec(false, "issue", "kiln.test")], plain, true),
            ("empty issuer", vec![rec(false, "issue", ";")], plain, false),
            ("empty value", vec![rec(false, "issue", "")], plain, false),
            ("tag case-insensitive", vec![rec(false, "ISSUE", "other.ca")], plain, false),
            ("issuewild tag case-insensitive", vec![rec(false, "IssueWild", "kiln.test"), rec(false, "issue", "other.ca")], wild, true),
            ("issuer case-insensitive", vec![rec(false, "issue", "KILN.Test")], plain, true),
            ("critical unknown tag case", vec![rec(true, "IODEF", "mailto:x@a.com"), rec(false, "issue", "kiln.test")], plain, true),
        ];
        for (name, records, req, allowed) in cases {
            let got = evaluate(&records, &req, &policy);
            assert_eq!(got.is_ok(), allowed, "{name}: {got:?}");
        }
    }

    #[test]
    fn forbidden_reason_is_bounded_and_escaped() {
        let policy = CaaPolicy {
            issuer_domains: vec!["kiln.test".into()],
        };
        let req = CaaRequest {
            identifier: "a.com",
            account_uri: None,
            validation_method: None,
        };
        let long = format!("other.ca; x={}\n", "y".repeat(1000));
        let why = evaluate(&[rec(false, "issue", &long)], &req, &policy).unwrap_err();
        assert!(why.len() < 300, "{why}");
        assert!(!why.contains('\n'), "{why}");
    }

    #[test]
    fn ancestors_climb_to_the_tld() {
        let got: Vec<&str> = ancestors("a.b.example.com").collect();
        assert_eq!(
            got,
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
    }

    #[test]
    fn issue_value_parse() {
        let v = IssueValue::parse(b"ca.net; a=1;b-c = x=y").unwrap();
        assert_eq!(v.issuer, Some("ca.net"));
        assert_eq!(v.params, vec![("a", "1"), ("b-c", "x=y")]);
        assert_eq!(IssueValue::parse(b";").unwrap().issuer, None);
        assert!(IssueValue::parse(b"-ca.net").is_err());
        assert!(IssueValue::parse(b"ca.net; =1").is_err());
    }
}

/// `check`/`check_all` against a real DNS server on loopback.
#[cfg(test)]
mod live {
    use super::*;
    use crate::testing::TestDnsServer;

    fn policy() -> CaaPolicy {
        CaaPolicy {
            issuer_domains: vec!["kiln.test".into()],
        }
    }

    fn req(identifier: &str) -> CaaRequest<'_> {
        CaaRequest {
            identifier,
            account_uri: None,
            validation_method: Some("dns-01"),
        }
    }

    #[tokio::test]
    async fn tree_climbing_finds_the_parent_record() {
        let server = TestDnsServer::start().await;
        server
            .set_caa("example.com", false, "issue", "other.ca")
            .await;
        server
            .set_caa("ok.example.com", false, "issue", "kiln.test")
            .await;
        server
            .set_caa("wild.com", false, "issuewild", "kiln.test")
            .await;
        server.set_caa("wild.com", false, "issue", "other.ca").await;
        let dns = server.dns();

        // Only the parent has CAA: it governs the deep name and the wildcard.
        for name in ["a.b.example.com", "*.b.example.com"] {
            let p = check(&dns, &req(name), &policy()).await.unwrap_err();
            assert_eq!(p.kind, ProblemKind::Caa, "{p}");
            assert_eq!(p.identifier, Some(Identifier::dns(name)));
            assert!(
                p.detail.contains("example.com") && p.detail.contains(name),
                "{p}"
            );
        }
        // The closest non-empty RRset wins over the parent's.
        check(&dns, &req("x.ok.example.com"), &policy())
            .await
            .unwrap();
        check(&dns, &req("*.wild.com"), &policy()).await.unwrap();
        assert!(check(&dns, &req("wild.com"), &policy()).await.is_err());
        // No CAA anywhere on the path.
        check(&dns, &req("www.nocaa.org"), &policy()).await.unwrap();

        let asked: Vec<String> = server
            .queries()
            .into_iter()
            .filter(|q| q.qtype == "CAA")
            .map(|q| q.name)
            .collect();
        for name in [
            "a.b.example.com",
            "b.example.com",
            "example.com",
            "www.nocaa.org",
            "nocaa.org",
            "org",
        ] {
            assert!(
                asked.iter().any(|a| a == name),
                "{name} not asked: {asked:?}"
            );
        }
        // The wildcard label itself is never queried.
        assert!(!asked.iter().any(|a| a.starts_with('*')), "{asked:?}");
    }

    #[tokio::test]
    async fn check_all_names_every_failing_identifier_once() {
        let server = TestDnsServer::start().await;
        server.set_caa("one.com", false, "issue", "kiln.test").await;
        server
            .set_caa("three.com", false, "issue", "other.ca")
            .await;
        let dns = server.dns();

        let names = ["one.com", "two.com", "three.com"];
        let reqs: Vec<CaaRequest> = names.iter().map(|n| req(n)).collect();
        let p = check_all(&dns, &reqs, &policy()).await.unwrap_err();
        assert_eq!(p.kind, ProblemKind::Caa);
        assert_eq!(p.subproblems.len(), 1, "{p:?}");
        let sub = &p.subproblems[0];
        assert_eq!(sub.kind, ProblemKind::Caa);
        assert_eq!(sub.identifier, Some(Identifier::dns("three.com")));
        assert!(p.detail.contains("three.com"), "{p}");

        // Each name was looked up itself (not one name three times).
        let asked: Vec<String> = server.queries().into_iter().map(|q| q.name).collect();
        for name in names {
            assert!(
                asked.iter().any(|a| a == name),
                "{name} not asked: {asked:?}"
            );
        }

        // All allowed.
        server.clear().await;
        check_all(&dns, &reqs, &policy()).await.unwrap();
        check_all(&dns, &[], &policy()).await.unwrap();
    }

    #[tokio::test]
    async fn servfail_is_a_retryable_dns_problem() {
        let server = TestDnsServer::start().await;
        server.set_servfail("flaky.com");
        server.set_caa("bad.com", false, "issue", "other.ca").await;
        let dns = server.dns();

        // SERVFAIL on the parent, reached by climbing.
        let p = check(&dns, &req("www.flaky.com"), &policy())
            .await
            .unwrap_err();
        assert_eq!(p.kind, ProblemKind::Dns, "{p}");
        assert!(
            p.detail.contains("flaky.com") && p.detail.contains("retry"),
            "{p}"
        );

        let reqs = [req("ok.com"), req("www.flaky.com")];
        let p = check_all(&dns, &reqs, &policy()).await.unwrap_err();
        assert_eq!(p.kind, ProblemKind::Dns);
        assert_eq!(p.subproblems.len(), 1);
        assert_eq!(
            p.subproblems[0].identifier,
            Some(Identifier::dns("www.flaky.com"))
        );

        // Mixed: forbidden wins the top-level kind, both are named.
        let reqs = [req("www.flaky.com"), req("bad.com")];
        let p = check_all(&dns, &reqs, &policy()).await.unwrap_err();
        assert_eq!(p.kind, ProblemKind::Caa);
        let kinds: Vec<ProblemKind> = p.subproblems.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [ProblemKind::Dns, ProblemKind::Caa]);
    }
}
