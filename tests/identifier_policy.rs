//! Black-box tests of the names Kiln refuses (`domain::identifier_policy`):
//! hand-built new-order requests against an in-process Kiln, each refusal a
//! 400 `rejectedIdentifier` whose subproblem names the identifier.
//!
//! The all-in-one allows the special-use domain `test` (the names these
//! tests otherwise use); the tests of other settings start a Kiln with them.

use kiln::{EmbeddedConfig, Kiln};
use kiln_tests::TestKiln;
use kiln_tests::acme::{Account, Acme};
use serde_json::{Value, json};

async fn start_with(tweak: impl FnOnce(&mut EmbeddedConfig)) -> (TestKiln, Acme, Account) {
    let kiln = TestKiln::start_with(None, tweak).await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    (kiln, acme, account)
}

fn order_of(names: &[&str]) -> Value {
    let identifiers: Vec<Value> = names
        .iter()
        .map(|n| json!({"type": "dns", "value": n}))
        .collect();
    json!({ "identifiers": identifiers })
}

/// Orders `name` beside a good name: asserts a 400 `rejectedIdentifier`
/// whose only subproblem is a `rejectedIdentifier` for `name`; returns that
/// subproblem's detail.
async fn refused(acme: &Acme, account: &Account, name: &str) -> String {
    let reply = acme
        .new_order_reply(account, &order_of(&["fine.test", name]))
        .await;
    reply.expect_problem(400, "rejectedIdentifier");
    let subproblems = reply.body["subproblems"]
        .as_array()
        .unwrap_or_else(|| panic!("{name:?}: no subproblems: {}", reply.text));
    assert_eq!(subproblems.len(), 1, "only {name:?} is bad: {}", reply.text);
    let sub = &subproblems[0];
    assert_eq!(
        sub["type"], "urn:ietf:params:acme:error:rejectedIdentifier",
        "{}",
        reply.text
    );
    assert_eq!(
        sub["identifier"],
        json!({"type": "dns", "value": name}),
        "{}",
        reply.text
    );
    sub["detail"].as_str().expect("detail").to_string()
}

/// Orders `names`; asserts 201 and returns the order's identifier values.
async fn accepted(acme: &Acme, account: &Account, names: &[&str]) -> Vec<String> {
    let reply = acme.new_order_reply(account, &order_of(names)).await;
    reply.expect_status(201);
    reply.body["identifiers"]
        .as_array()
        .expect("identifiers")
        .iter()
        .map(|i| i["value"].as_str().expect("value").to_string())
        .collect()
}

fn assert_contains(detail: &str, fragment: &str) {
    assert!(
        detail.contains(fragment),
        "detail {detail:?} should mention {fragment:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_public_suffixes_and_wildcards_under_them_are_refused() {
    let (kiln, acme, account) = start_with(|_| {}).await;
    for suffix in ["co.uk", "github.io", "foo.ck"] {
        let detail = refused(&acme, &account, suffix).await;
        assert_contains(&detail, "is a public suffix");
    }
    // A one-label name is no name (a TLD such as `com` included).
    assert_contains(&refused(&acme, &account, "com").await, "two labels");
    for wildcard in ["*.co.uk", "*.github.io", "*.com", "*.test"] {
        let detail = refused(&acme, &account, wildcard).await;
        assert_contains(&detail, "wildcard directly under the public suffix");
    }
    // One label more is a registered domain, and fine.
    let names = [
        "example.co.uk",
        "*.example.co.uk",
        "me.github.io",
        "*.me.github.io",
    ];
    assert_eq!(accepted(&acme, &account, &names).await.len(), 4);
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_identifier_is_its_own_subproblem() {
    let (kiln, acme, account) = start_with(|_| {}).await;
    let bad = ["co.uk", "*.com", "a.test..", "db.internal"];
    let mut names = vec!["fine.test"];
    names.extend(bad);
    let reply = acme.new_order_reply(&account, &order_of(&names)).await;
    let detail = reply.expect_problem(400, "rejectedIdentifier");
    assert_contains(&detail, "4 identifier(s)");
    let named: Vec<&str> = reply.body["subproblems"]
        .as_array()
        .expect("subproblems")
        .iter()
        .map(|s| s["identifier"]["value"].as_str().expect("identifier"))
        .collect();
    assert_eq!(named, bad, "{}", reply.text);
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_use_domains_are_refused_unless_the_operator_allows_them() {
    // The all-in-one's default: `test` only.
    let (kiln, acme, account) = start_with(|_| {}).await;
    assert_eq!(
        accepted(&acme, &account, &["example.test", "*.example.test"]).await,
        ["*.example.test", "example.test"]
    );
    for name in [
        "db.corp.internal",
        "host.alt",
        "a.example",
        "printer.local",
        "router.home.arpa",
    ] {
        assert_contains(&refused(&acme, &account, name).await, "does not issue for");
    }
    for name in [
        "abc.onion",
        "a.localhost",
        "x.invalid",
        "1.0.0.127.in-addr.arpa",
    ] {
        assert_contains(
            &refused(&acme, &account, name).await,
            "no certificate may name",
        );
    }
    kiln.kiln.shutdown().await;

    // Production's default: none, so `test` is refused too.
    let (kiln, acme, account) = start_with(|c| c.allowed_special_use_domains.clear()).await;
    let reply = acme
        .new_order_reply(&account, &order_of(&["example.test"]))
        .await;
    reply.expect_problem(400, "rejectedIdentifier");
    let detail = reply.body["subproblems"][0]["detail"]
        .as_str()
        .unwrap_or("");
    assert_contains(detail, "special-use domain");
    assert_eq!(
        accepted(&acme, &account, &["example.com"]).await,
        ["example.com"]
    );
    kiln.kiln.shutdown().await;

    // Another one allowed.
    let (kiln, acme, account) = start_with(|c| {
        c.allowed_special_use_domains = vec!["test".into(), "internal".into()];
    })
    .await;
    assert_eq!(
        accepted(&acme, &account, &["db.corp.internal"]).await,
        ["db.corp.internal"]
    );
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_blocked_names_are_refused_exactly_or_by_suffix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("blocked.txt");
    std::fs::write(&file, "# from a file\n*.filed.test\n").expect("write");
    let (kiln, acme, account) = start_with(|c| {
        c.blocked_names = vec!["blocked.test".into(), ".corp.test".into()];
        c.blocked_names_file = Some(file);
    })
    .await;
    for name in [
        // exact, and the same name in another spelling
        "blocked.test",
        "BLOCKED.test.",
        // `.corp.test`: it and everything under it
        "corp.test",
        "a.corp.test",
        "x.y.corp.test",
        "*.corp.test",
        "a.filed.test",
        "*.filed.test",
    ] {
        assert_contains(
            &refused(&acme, &account, name).await,
            "is on this CA's blocklist",
        );
    }
    // An exact entry blocks nothing under it; `*.name` not the name itself.
    let names = ["www.blocked.test", "filed.test", "notcorp.test"];
    assert_eq!(accepted(&acme, &account, &names).await.len(), 3);
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_trailing_dot() {
    let (kiln, acme, account) = start_with(|_| {}).await;
    assert_eq!(
        accepted(&acme, &account, &["dot.test."]).await,
        ["dot.test"]
    );
    for name in ["dot.test..", "dot.test...", "*.dot.test.."] {
        assert_contains(&refused(&acme, &account, name).await, "invalid label");
    }
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_suffix_list_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("public_suffix_list.dat");
    let list = "// ===BEGIN ICANN DOMAINS===\ncom\nuk\nco.uk\ntest\n// ===END ICANN DOMAINS===\n\
        // ===BEGIN PRIVATE DOMAINS===\nhosted.test\n// ===END PRIVATE DOMAINS===\n";
    std::fs::write(&file, list).expect("write");
    let (kiln, acme, account) = start_with(|c| c.public_suffix_list = Some(file)).await;
    assert_contains(
        &refused(&acme, &account, "hosted.test").await,
        "is a public suffix",
    );
    let detail = refused(&acme, &account, "*.hosted.test").await;
    assert_contains(&detail, "wildcard directly under the public suffix");
    // Not a suffix in this file, though it is in the built-in list.
    assert_eq!(
        accepted(&acme, &account, &["github.io"]).await,
        ["github.io"]
    );
    kiln.kiln.shutdown().await;
}

type Tweak = dyn Fn(&mut EmbeddedConfig);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_identifier_settings_stop_kiln_from_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad_list = dir.path().join("psl.dat");
    std::fs::write(&bad_list, "<html>502</html>").expect("write");
    let tweaks: [(&str, Box<Tweak>); 3] = [
        (
            "onion",
            Box::new(|c| c.allowed_special_use_domains = vec!["onion".into()]),
        ),
        ("a..b", Box::new(|c| c.blocked_names = vec!["a..b".into()])),
        (
            "psl.dat",
            Box::new(move |c| c.public_suffix_list = Some(bad_list.clone())),
        ),
    ];
    for (named, tweak) in tweaks {
        let data = tempfile::tempdir().expect("temp dir");
        let mut config = EmbeddedConfig::new(data.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        tweak(&mut config);
        let err = match Kiln::start(config).await {
            Ok(kiln) => {
                kiln.shutdown().await;
                panic!("Kiln started with a bad {named} setting");
            }
            Err(e) => format!("{e:#}"),
        };
        assert_contains(&err, named);
    }
}

/// The port of a `https://host:port` URL.
fn port_of(base_url: &str) -> u16 {
    let port = base_url.rsplit(':').next().expect("a port");
    port.trim_end_matches('/').parse().expect("a numeric port")
}

/// The policy is built at start-up: a name blocked after its order was
/// created (the blocklist changed, the api restarted) is refused at
/// finalize with `rejectedIdentifier`, and the order stays `ready`; an
/// order of names still allowed finalizes as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_rechecks_the_names_against_the_policy_in_force() {
    let first = TestKiln::start(None).await;
    let acme = Acme::connect(&first).await;
    let account = acme.create_account().await;
    let blocked = ["fine-then.test", "later-blocked.test"];
    let blocked_order = acme.ready_order(&first, &account, &blocked).await;
    let fine = ["still-fine.test"];
    let fine_order = acme.ready_order(&first, &account, &fine).await;

    // Restart on the same data directory and port with the name blocked.
    let TestKiln {
        kiln,
        http01,
        data_dir,
    } = first;
    let port = port_of(&kiln.base_url);
    kiln.shutdown().await;
    let mut config = EmbeddedConfig::new(data_dir.path());
    config.listen = ([127, 0, 0, 1], port).into();
    config.http01_port = http01.port;
    config.tlsalpn01_port = kiln_tests::free_port();
    config.blocked_names = vec!["later-blocked.test".into()];
    let kiln = Kiln::start(config).await.expect("kiln restarts");

    let reply = acme
        .finalize(&account, &blocked_order, &kiln_tests::csr_der(&blocked))
        .await;
    let detail = reply.expect_problem(400, "rejectedIdentifier");
    assert_contains(&detail, "1 identifier(s)");
    let subproblems = reply.body["subproblems"].as_array().expect("subproblems");
    assert_eq!(subproblems.len(), 1, "{}", reply.text);
    assert_eq!(
        subproblems[0]["identifier"],
        json!({"type": "dns", "value": "later-blocked.test"}),
        "{}",
        reply.text
    );
    assert_contains(
        subproblems[0]["detail"].as_str().unwrap_or(""),
        "is on this CA's blocklist",
    );
    let order = acme.read_order(&account, &blocked_order.url).await;
    assert_eq!(order.status(), "ready", "not processing: {}", order.body);
    assert!(order.body["certificate"].is_null(), "{}", order.body);

    acme.finalize(&account, &fine_order, &kiln_tests::csr_der(&fine))
        .await
        .expect_status(200);
    acme.poll_order(&account, &fine_order.url, "valid").await;
    kiln.shutdown().await;
    drop((http01, data_dir));
}
