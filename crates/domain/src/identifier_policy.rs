//! Which DNS names Kiln issues for: every rule a requested identifier must
//! pass, in one place. New-order is where they are enforced; a CSR must then
//! name exactly the order's identifiers, so finalize needs no second check.
//!
//! In order, each failure a `rejectedIdentifier` naming the identifier:
//! 1. syntax: LDH labels of 1–63 bytes, at most 253 in all, at least two
//!    labels, at most one trailing dot (the root; `a.com.` is `a.com`,
//!    `a.com..` is no name), a wildcard only as the whole first label, every
//!    `xn--` label valid IDNA, no IP address, no all-numeric TLD;
//! 2. special-use names (RFC 6761 and later): refused unless the operator
//!    allows the domain (`test` in the all-in-one), some never;
//! 3. the Public Suffix List: not a public suffix itself, not a wildcard
//!    directly under one (BR 3.2.2.6: `*.co.uk` would cover every
//!    registrant's names);
//! 4. the operator's blocklist.

use crate::public_suffix::PublicSuffixList;
use crate::{Problem, ProblemKind};

/// A special-use domain name and where it is reserved.
struct SpecialUse {
    domain: &'static str,
    reserved_by: &'static str,
    /// An operator may allow it (a test CA issuing for `*.test`); the others
    /// never belong to anyone a CA could validate.
    allowable: bool,
}

/// Most specific first: `home.arpa` before `arpa`.
const SPECIAL_USE: &[SpecialUse] = &[
    // Resolvers answer it themselves, with loopback.
    special("localhost", "RFC 6761", false),
    // Guaranteed never to exist.
    special("invalid", "RFC 6761", false),
    // Tor services; the BRs' onion validation (Appendix B) is not done here.
    special("onion", "RFC 7686", false),
    // Residential networks' own names.
    special("home.arpa", "RFC 8375", true),
    // Infrastructure (reverse DNS and the like).
    special("arpa", "RFC 3172", false),
    special("test", "RFC 6761", true),
    special("example", "RFC 6761", true),
    // Multicast DNS, link-local.
    special("local", "RFC 6762", true),
    // Names of non-DNS resolution systems.
    special("alt", "RFC 9476", true),
    // Private networks (ICANN, 2024): never delegated, so never validated.
    special("internal", "ICANN", true),
];

const fn special(domain: &'static str, reserved_by: &'static str, allowable: bool) -> SpecialUse {
    SpecialUse {
        domain,
        reserved_by,
        allowable,
    }
}

/// A setting Kiln cannot use; the message names the entry.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{0:?} is not a special-use domain that can be allowed (one of test, example, internal, alt, local, home.arpa)"
    )]
    NotAllowable(String),
    #[error("blocklist entry {0:?}: {1}")]
    BadBlockEntry(String, &'static str),
}

/// The rules in force: the suffix list, the special-use domains allowed
/// and the blocklist. `default()` is production's: the built-in list, no
/// special-use domain, nothing blocked.
#[derive(Clone, Debug, Default)]
pub struct IdentifierPolicy {
    suffixes: PublicSuffixList,
    allowed_special_use: Vec<&'static str>,
    blocklist: Vec<BlockEntry>,
    /// IP identifiers may be loopback addresses (the all-in-one).
    loopback_ips: bool,
}

impl IdentifierPolicy {
    /// Uses `list` instead of the built-in Public Suffix List.
    pub fn with_suffix_list(mut self, list: PublicSuffixList) -> Self {
        self.suffixes = list;
        self
    }

    /// Allows names under these special-use domains (e.g. `test`).
    pub fn allow_special_use<S: AsRef<str>>(mut self, domains: &[S]) -> Result<Self, PolicyError> {
        for domain in domains {
            let wanted = domain
                .as_ref()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let known = SPECIAL_USE
                .iter()
                .find(|s| s.allowable && s.domain == wanted)
                .ok_or_else(|| PolicyError::NotAllowable(domain.as_ref().to_string()))?;
            if !self.allowed_special_use.contains(&known.domain) {
                self.allowed_special_use.push(known.domain);
            }
        }
        Ok(self)
    }

    /// Adds blocklist entries: `name` blocks exactly that name; `*.name`
    /// every name under it (not `name` itself); `.name` both. A wildcard
    /// identifier is blocked when its certificate would be valid for a
    /// blocked name: `mail.example.com` blocks `*.example.com` too.
    pub fn block_names<S: AsRef<str>>(mut self, entries: &[S]) -> Result<Self, PolicyError> {
        for entry in entries {
            self.blocklist.push(BlockEntry::parse(entry.as_ref())?);
        }
        Ok(self)
    }

    /// Admits loopback addresses (127.0.0.0/8, ::1) as IP identifiers: a
    /// laptop CA, whose clients' challenge servers run on the laptop.
    pub fn allow_loopback_ips(mut self) -> Self {
        self.loopback_ips = true;
        self
    }

    /// Checks a requested identifier of either kind ([`Self::check`] for
    /// `dns`, [`crate::ip_address::check_ip_identifier`] for `ip`) and
    /// returns it normalised; another type is `unsupportedIdentifier`.
    pub fn check_identifier(&self, id: &crate::Identifier) -> Result<crate::Identifier, Problem> {
        match id.kind.as_str() {
            crate::Identifier::DNS => self.check(&id.value).map(crate::Identifier::dns),
            crate::Identifier::IP => {
                crate::ip_address::check_ip_identifier(&id.value, self.loopback_ips)
                    .map(crate::Identifier::ip)
            }
            other => Err(Problem::new(
                ProblemKind::UnsupportedIdentifier,
                format!("identifier type {other:?} is not supported; only \"dns\" and \"ip\""),
            )),
        }
    }

    /// The special-use domains allowed, for start-up messages.
    pub fn allowed_special_use(&self) -> &[&'static str] {
        &self.allowed_special_use
    }

    /// Checks a requested DNS identifier against every rule and returns it
    /// normalised (lowercase, no trailing dot). `Err` is the
    /// `rejectedIdentifier` problem saying why.
    pub fn check(&self, raw: &str) -> Result<String, Problem> {
        let reject =
            |why: String| Problem::new(ProblemKind::RejectedIdentifier, format!("{raw:?} {why}"));
        let name = syntax(raw).map_err(|why| reject(why.to_string()))?;
        let (wildcard, base) = match name.strip_prefix("*.") {
            Some(base) => (true, base),
            None => (false, name.as_str()),
        };
        if let Some(special) = SPECIAL_USE.iter().find(|s| is_at_or_under(base, s.domain)) {
            let (domain, by) = (special.domain, special.reserved_by);
            if !special.allowable {
                return Err(reject(format!(
                    "is under {domain:?}, a special-use domain ({by}) no certificate may name"
                )));
            }
            if !self.allowed_special_use.contains(&domain) {
                return Err(reject(format!(
                    "is under {domain:?}, a special-use domain ({by}) this CA does not issue for"
                )));
            }
        }
        if self.suffixes.is_public_suffix(base) {
            return Err(reject(match wildcard {
                true => format!("is a wildcard directly under the public suffix {base:?}"),
                false => "is a public suffix, which no one registers".to_string(),
            }));
        }
        if self
            .blocklist
            .iter()
            .any(|entry| entry.blocks(wildcard, base))
        {
            return Err(reject("is on this CA's blocklist".to_string()));
        }
        Ok(name)
    }

    /// The registered domain (eTLD+1) of a name as [`check`](Self::check)
    /// returns it, by the list in force: `example.co.uk` for
    /// `*.www.example.co.uk`.
    pub fn registered_domain<'a>(&self, name: &'a str) -> Option<&'a str> {
        let base = name.strip_prefix("*.").unwrap_or(name);
        // An address is its own registrant, as far as limits go.
        if base.parse::<std::net::IpAddr>().is_ok() {
            return Some(base);
        }
        self.suffixes.registered_domain(base)
    }
}

/// The blocklist entries of a file: one per line; blank lines and `#`
/// comments are skipped.
pub fn blocklist_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BlockEntry {
    /// `name`: that name.
    Exact(String),
    /// `*.name`: every name under it.
    Under(String),
    /// `.name`: it and every name under it.
    Tree(String),
}

impl BlockEntry {
    fn parse(raw: &str) -> Result<BlockEntry, PolicyError> {
        let bad = |why| PolicyError::BadBlockEntry(raw.to_string(), why);
        let text = raw.trim().to_ascii_lowercase();
        let text = text.strip_suffix('.').unwrap_or(&text);
        let (entry, name): (fn(String) -> BlockEntry, &str) = match text {
            t if t.starts_with("*.") => (BlockEntry::Under, &t[2..]),
            t if t.starts_with('.') => (BlockEntry::Tree, &t[1..]),
            t => (BlockEntry::Exact, t),
        };
        let labels_ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| label_error(label).is_none());
        if !labels_ok {
            return Err(bad("not a DNS name, `*.name` or `.name`"));
        }
        Ok(entry(name.to_string()))
    }

    /// Would a certificate for this identifier be valid for a blocked name?
    /// `base` is the identifier without its `*.`.
    fn blocks(&self, wildcard: bool, base: &str) -> bool {
        // The names a wildcard covers: one label more than its base.
        let covers = |host: &str| match wildcard {
            false => host == base,
            true => host
                .strip_suffix(base)
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        };
        match self {
            BlockEntry::Exact(name) => covers(name),
            // Every name a wildcard covers is under its base.
            BlockEntry::Under(top) if wildcard => is_at_or_under(base, top),
            BlockEntry::Under(top) => is_strictly_under(base, top),
            BlockEntry::Tree(top) => is_at_or_under(base, top) || covers(top),
        }
    }
}

fn is_strictly_under(name: &str, parent: &str) -> bool {
    name.strip_suffix(parent)
        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

fn is_at_or_under(name: &str, parent: &str) -> bool {
    name == parent || is_strictly_under(name, parent)
}

/// The syntax rules (1. above): the name lowercased without its trailing
/// dot, or what is wrong with it.
fn syntax(raw: &str) -> Result<String, &'static str> {
    // One trailing dot (the root) is the same name; `a.com..` is not a name.
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err("is not a valid DNS name length");
    }
    let base = name.strip_prefix("*.").unwrap_or(&name);
    if base.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; use an identifier of type \"ip\" (not supported here)");
    }
    if base.contains('*') {
        return Err("may only have a wildcard as its whole first label");
    }
    let labels: Vec<&str> = base.split('.').collect();
    // `*.com` has a one-label base: the suffix check says what is wrong.
    if labels.len() < 2 && base.len() == name.len() {
        return Err("must have at least two labels");
    }
    if let Some(why) = labels.iter().find_map(|label| label_error(label)) {
        return Err(why);
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("has an all-numeric top-level label");
    }
    Ok(name)
}

fn label_error(label: &str) -> Option<&'static str> {
    let ldh = label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if label.is_empty() || label.len() > 63 || !ldh {
        Some("contains an invalid label")
    } else if label.starts_with('-') || label.ends_with('-') {
        Some("has a label that starts or ends with a hyphen")
    } else if label.starts_with("xn--") && !is_valid_a_label(label) {
        Some("has an xn-- label that is not valid IDNA punycode")
    } else {
        None
    }
}

/// An `xn--` label that decodes (RFC 3492) to a label which IDNA (UTS #46,
/// strict) encodes back to exactly it: not garbage after the prefix, not a
/// non-canonical encoding of another name.
fn is_valid_a_label(label: &str) -> bool {
    let (unicode, decoded) = idna::domain_to_unicode(label);
    decoded.is_ok() && idna::domain_to_ascii_strict(&unicode).is_ok_and(|ascii| ascii == label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(policy: &IdentifierPolicy, name: &str) -> String {
        let problem = policy.check(name).expect_err(name);
        assert_eq!(problem.kind, ProblemKind::RejectedIdentifier, "{name}");
        problem.detail
    }

    #[test]
    fn syntax_is_normalised_or_refused() {
        let policy = IdentifierPolicy::default();
        let ok = [
            ("Example.COM.", "example.com"),
            ("*.example.com", "*.example.com"),
            ("a-b.c0.example.org", "a-b.c0.example.org"),
            ("xn--bcher-kva.example.com", "xn--bcher-kva.example.com"),
            ("XN--BCHER-KVA.example.com", "xn--bcher-kva.example.com"),
        ];
        for (raw, want) in ok {
            assert_eq!(policy.check(raw).unwrap(), want, "{raw}");
        }
        for bad in [
            "",
            ".",
            "127.0.0.1",
            "*.10.0.0.1",
            "a..b.com",
            "-a.com",
            "a-.com",
            "*.*.a.com",
            "a.*.com",
            "*a.com",
            "under_score.com",
            "a.123",
            "xn--.example.com",
            "xn--a.example.com",
        ] {
            refusal(&policy, bad);
        }
    }

    #[test]
    fn at_most_one_trailing_dot() {
        let policy = IdentifierPolicy::default();
        assert_eq!(policy.check("a.com.").unwrap(), "a.com");
        for bad in ["a.com..", "a.com...", "*.a.com.."] {
            assert!(refusal(&policy, bad).contains("invalid label"), "{bad}");
        }
    }

    #[test]
    fn special_use_names_are_refused_unless_allowed() {
        let strict = IdentifierPolicy::default();
        for name in [
            "example.test",
            "*.example.test",
            "a.example",
            "printer.local",
            "host.alt",
            "db.corp.internal",
            "router.home.arpa",
        ] {
            assert!(
                refusal(&strict, name).contains("does not issue for"),
                "{name}"
            );
        }
        for name in [
            "a.localhost",
            "x.invalid",
            "abc.onion",
            "1.0.0.127.in-addr.arpa",
            "x.arpa",
        ] {
            assert!(
                refusal(&strict, name).contains("no certificate may name"),
                "{name}"
            );
        }
        let tests = IdentifierPolicy::default()
            .allow_special_use(&["TEST."])
            .unwrap();
        assert_eq!(tests.check("example.test").unwrap(), "example.test");
        assert_eq!(tests.check("*.example.test").unwrap(), "*.example.test");
        assert!(refusal(&tests, "db.internal").contains("\"internal\""));
        let home = IdentifierPolicy::default()
            .allow_special_use(&["home.arpa"])
            .unwrap();
        assert_eq!(home.check("router.home.arpa").unwrap(), "router.home.arpa");
        assert!(refusal(&home, "x.arpa").contains("no certificate may name"));
        // Look-alikes are ordinary names.
        assert_eq!(strict.check("test.com").unwrap(), "test.com");
        assert_eq!(strict.check("mytest.org").unwrap(), "mytest.org");
        for never in ["localhost", "onion", "arpa", "com", "nonsense"] {
            let err = IdentifierPolicy::default().allow_special_use(&[never]);
            assert!(matches!(err, Err(PolicyError::NotAllowable(_))), "{never}");
        }
    }

    #[test]
    fn public_suffixes_and_wildcards_directly_under_them_are_refused() {
        let policy = IdentifierPolicy::default()
            .allow_special_use(&["test"])
            .unwrap();
        for name in ["co.uk", "github.io", "foo.ck"] {
            assert!(
                refusal(&policy, name).contains("is a public suffix"),
                "{name}"
            );
        }
        for name in [
            "*.com",
            "*.co.uk",
            "*.github.io",
            "*.foo.ck",
            "*.test",
            "*.nonsense",
        ] {
            let detail = refusal(&policy, name);
            assert!(
                detail.contains("wildcard directly under the public suffix"),
                "{name}: {detail}"
            );
        }
        for name in ["com", "test"] {
            assert!(
                refusal(&policy, name).contains("at least two labels"),
                "{name}"
            );
        }
        assert!(refusal(&policy, "*.localhost").contains("no certificate may name"));
        for ok in [
            "example.co.uk",
            "*.example.co.uk",
            "me.github.io",
            "*.me.github.io",
            "www.ck",
            "*.example.test",
        ] {
            policy.check(ok).unwrap_or_else(|p| panic!("{ok}: {p}"));
        }
        // A loaded list replaces the built-in one.
        let list = "// ===BEGIN ICANN DOMAINS===\ncom\nuk\nco.uk\n// ===END ICANN DOMAINS===\n\
            // ===BEGIN PRIVATE DOMAINS===\nblogs.example.com\n// ===END PRIVATE DOMAINS===\n";
        let loaded =
            IdentifierPolicy::default().with_suffix_list(PublicSuffixList::parse(list).unwrap());
        assert!(refusal(&loaded, "*.blogs.example.com").contains("wildcard directly under"));
        assert_eq!(
            loaded.check("github.io").unwrap(),
            "github.io",
            "not in that file"
        );
    }

    #[test]
    fn registered_domains_follow_the_list() {
        let policy = IdentifierPolicy::default();
        assert_eq!(
            policy.registered_domain("*.www.example.co.uk"),
            Some("example.co.uk")
        );
        assert_eq!(
            policy.registered_domain("a.b.example.com"),
            Some("example.com")
        );
        assert_eq!(policy.registered_domain("co.uk"), None);
    }

    #[test]
    fn the_blocklist_matches_exactly_under_or_both() {
        let policy = IdentifierPolicy::default()
            .block_names(&[
                "Mail.Example.com.",
                "*.apps.example.org",
                ".corp.example.net",
            ])
            .unwrap();
        let blocked = [
            "mail.example.com",
            "*.example.com", // would be valid for mail.example.com
            "a.apps.example.org",
            "x.y.apps.example.org",
            "*.apps.example.org",
            "*.z.apps.example.org",
            "corp.example.net",
            "a.corp.example.net",
            "*.corp.example.net",
            "*.example.net", // would be valid for corp.example.net
        ];
        for name in blocked {
            assert!(
                refusal(&policy, name).contains("is on this CA's blocklist"),
                "{name}"
            );
        }
        let allowed = [
            "example.com",
            "a.mail.example.com",
            "*.mail.example.com",
            "apps.example.org",
            "*.example.org",
            "example.net",
            "notcorp.example.net",
            "corp.example.net.evil.com",
        ];
        for name in allowed {
            policy.check(name).unwrap_or_else(|p| panic!("{name}: {p}"));
        }
        for bad in ["", "*.", "a..b", "*.*.a.com", "a.*.com", "under_score.com"] {
            let err = IdentifierPolicy::default().block_names(&[bad]);
            assert!(
                matches!(err, Err(PolicyError::BadBlockEntry(..))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn blocklist_files_have_one_entry_a_line() {
        let text = "# compromised\nexample.com\n\n  .corp.example  # all of it\n*.x.example\n";
        assert_eq!(
            blocklist_entries(text),
            ["example.com", ".corp.example", "*.x.example"]
        );
    }
}
