//! The Public Suffix List (publicsuffix.org): the names under which anyone
//! may register a domain (`com`, `co.uk`, and private ones like
//! `github.io`). Kiln uses it to refuse certificates for a suffix itself or
//! a wildcard directly under one (BR 3.2.2.6), and to find a name's
//! registered domain (eTLD+1), which rate limits count by.
//!
//! The list built into the `psl` crate is used unless an operator gives a
//! newer copy of `public_suffix_list.dat`, parsed once at start-up.

use psl::Psl as _;

/// The list in force: the built-in one, or an operator's file.
#[derive(Clone, Debug, Default)]
pub struct PublicSuffixList(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    #[default]
    BuiltIn,
    Loaded(Box<publicsuffix::List>),
}

/// Why an operator's list was not taken.
#[derive(Debug, thiserror::Error)]
#[error("not a usable Public Suffix List: {0}")]
pub struct BadSuffixList(String);

impl PublicSuffixList {
    /// The list compiled into the `psl` crate (as new as that crate).
    pub fn built_in() -> Self {
        PublicSuffixList(Source::BuiltIn)
    }

    /// An operator's `public_suffix_list.dat` (ICANN and private sections).
    /// A file that parses yet lacks `com` and `co.uk` — an error page, a
    /// truncated download — is refused rather than allowing every name.
    pub fn parse(text: &str) -> Result<Self, BadSuffixList> {
        let list: publicsuffix::List = text.parse().map_err(|e| BadSuffixList(format!("{e:?}")))?;
        for known in ["com", "co.uk"] {
            if !list.suffix(known.as_bytes()).is_some_and(|s| s.is_known()) {
                return Err(BadSuffixList(format!("it does not list {known:?}")));
            }
        }
        Ok(PublicSuffixList(Source::Loaded(Box::new(list))))
    }

    /// `name` (lowercase, no trailing dot, no wildcard) is itself a public
    /// suffix, listed or implied (an unlisted TLD is one by the list's `*`
    /// rule): no one registers it, so no one can be issued for it.
    pub fn is_public_suffix(&self, name: &str) -> bool {
        self.registered_domain(name).is_none()
    }

    /// The registered domain of `name` (lowercase, no trailing dot): the
    /// public suffix and one more label, e.g. `example.co.uk` for
    /// `www.example.co.uk`; `None` when `name` is a public suffix.
    pub fn registered_domain<'a>(&self, name: &'a str) -> Option<&'a str> {
        let domain = match &self.0 {
            Source::BuiltIn => psl::List.domain(name.as_bytes()),
            Source::Loaded(list) => list.domain(name.as_bytes()),
        }?;
        // A suffix of an ASCII str at a label boundary: still valid UTF-8.
        std::str::from_utf8(domain.as_bytes()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few rules in the real file's shape.
    const SMALL_LIST: &str = "// ===BEGIN ICANN DOMAINS===\ncom\nuk\nco.uk\n*.ck\n!www.ck\n\
        // ===END ICANN DOMAINS===\n// ===BEGIN PRIVATE DOMAINS===\ngithub.io\nexample.net\n\
        // ===END PRIVATE DOMAINS===\n";

    #[test]
    fn built_in_list_knows_icann_and_private_suffixes() {
        let list = PublicSuffixList::built_in();
        for suffix in ["com", "co.uk", "github.io", "foo.ck", "test", "anything"] {
            assert!(list.is_public_suffix(suffix), "{suffix}");
        }
        let cases = [
            ("example.com", "example.com"),
            ("www.example.com", "example.com"),
            ("a.b.example.co.uk", "example.co.uk"),
            ("me.github.io", "me.github.io"),
            ("x.me.github.io", "me.github.io"),
            ("www.ck", "www.ck"),
            ("a.example.test", "example.test"),
        ];
        for (name, want) in cases {
            assert_eq!(list.registered_domain(name), Some(want), "{name}");
        }
    }

    #[test]
    fn an_operator_list_replaces_the_built_in_one() {
        let list = PublicSuffixList::parse(SMALL_LIST).unwrap();
        assert!(
            list.is_public_suffix("example.net"),
            "a private rule only in this file"
        );
        assert!(!list.is_public_suffix("x.example.net"));
        assert_eq!(
            list.registered_domain("a.x.example.net"),
            Some("x.example.net")
        );
        assert!(list.is_public_suffix("co.uk") && list.is_public_suffix("foo.ck"));
        assert_eq!(list.registered_domain("www.ck"), Some("www.ck"));
        assert!(
            PublicSuffixList::built_in().registered_domain("x.example.net") == Some("example.net")
        );
    }

    #[test]
    fn a_list_without_the_basics_is_refused() {
        assert!(PublicSuffixList::parse("").is_err());
        assert!(PublicSuffixList::parse("<html>502 Bad Gateway</html>").is_err());
        let no_co_uk = "// ===BEGIN ICANN DOMAINS===\ncom\n// ===END ICANN DOMAINS===\n";
        assert!(PublicSuffixList::parse(no_co_uk).is_err());
    }
}
