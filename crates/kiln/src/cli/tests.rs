//! The command line as `kiln` parses it.
use super::*;

#[test]
fn ct_logs_are_url_and_key() {
    let key = openssl::pkey::PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.public_key_to_der().unwrap());
    let log = parse_ct_log(&format!("http://127.0.0.1:9={b64}")).unwrap();
    assert_eq!(log.url, "http://127.0.0.1:9");
    assert_eq!(log.operator, "http://127.0.0.1:9");
    assert!(parse_ct_log("http://127.0.0.1:9").is_err(), "no key");
    assert!(parse_ct_log("ftp://x=AAAA").is_err(), "not http");
    assert!(parse_ct_log("http://x=AAAA").is_err(), "not a key");
}

#[test]
fn special_use_defaults_to_test_and_none_means_none() {
    let args = |extra: &[&str]| {
        let cli = Cli::try_parse_from(["kiln"].iter().chain(extra)).unwrap();
        cli.serve.allowed_special_use_domains()
    };
    assert_eq!(args(&[]), ["test"]);
    assert_eq!(args(&["--allow-special-use", "none"]), Vec::<String>::new());
    assert_eq!(
        args(&["--allow-special-use", "test,internal"]),
        ["test", "internal"]
    );
    let cli = Cli::try_parse_from([
        "kiln",
        "--blocked-name",
        "a.example.com",
        "--blocked-name",
        ".corp.example",
    ])
    .unwrap();
    assert_eq!(cli.serve.blocked_names, ["a.example.com", ".corp.example"]);
}

#[test]
fn debian_weak_key_lists_repeat() {
    let cli = Cli::try_parse_from([
        "kiln",
        "--debian-weak-keys",
        "/usr/share/openssl-blacklist/blacklist.RSA-2048",
        "--debian-weak-keys",
        "extra.txt",
    ])
    .unwrap();
    assert_eq!(
        cli.serve.debian_weak_keys,
        [
            PathBuf::from("/usr/share/openssl-blacklist/blacklist.RSA-2048"),
            PathBuf::from("extra.txt")
        ]
    );
}

#[test]
fn eab_commands_and_the_serve_flag_parse() {
    let cli = Cli::try_parse_from(["kiln", "--external-account-required"]).unwrap();
    assert!(cli.serve.external_account_required);
    let cli = Cli::try_parse_from(["kiln"]).unwrap();
    assert!(!cli.serve.external_account_required);
    let cli = Cli::try_parse_from(["kiln", "eab", "create", "--comment", "alice"]).unwrap();
    assert!(matches!(
        cli.command,
        Some(Command::Eab(EabCommand::Create { ref comment, .. })) if comment == "alice"
    ));
    let cli = Cli::try_parse_from([
        "kiln",
        "eab",
        "revoke",
        "K1",
        "--database-url",
        "postgres://x",
    ])
    .unwrap();
    assert!(matches!(
        cli.command,
        Some(Command::Eab(EabCommand::Revoke { ref key_id, .. })) if key_id == "K1"
    ));
    assert!(
        Cli::try_parse_from(["kiln", "eab", "revoke"]).is_err(),
        "a key id is needed"
    );
}

/// Order ids and EAB key ids are base64url: one in 64 begins with `-`,
/// and is still an id, not a flag.
#[test]
fn ids_may_begin_with_a_hyphen() {
    let cli = Cli::try_parse_from(["kiln", "order", "show", "-Iq9", "--data-dir", "d"]).unwrap();
    assert!(matches!(
        cli.command,
        Some(Command::Order(OrderCommand::Show { ref id, .. })) if id == "-Iq9"
    ));
    let cli = Cli::try_parse_from(["kiln", "eab", "revoke", "-K1"]).unwrap();
    assert!(matches!(
        cli.command,
        Some(Command::Eab(EabCommand::Revoke { ref key_id, .. })) if key_id == "-K1"
    ));
}

#[test]
fn challenge_types_are_named_by_their_acme_names() {
    use domain::ChallengeType;
    let parsed = |extra: &[&str]| {
        Cli::try_parse_from(["kiln"].iter().chain(extra)).map(|cli| cli.serve.challenge_types)
    };
    assert_eq!(parsed(&[]).unwrap(), [], "none named: the default");
    assert_eq!(
        parsed(&["--challenge-types", "http-01,dns-persist-01"]).unwrap(),
        [ChallengeType::Http01, ChallengeType::DnsPersist01]
    );
    for bad in ["http01", "unknown", ""] {
        assert!(parsed(&["--challenge-types", bad]).is_err(), "{bad:?}");
    }
}
