//! `kiln conformance` against real ACME clients and a deliberately broken
//! one: the `kiln` binary runs each client once per chosen scenario against
//! a fresh all-in-one Kiln, and its scorecard (`--json`) must give the
//! verdicts these clients are known to earn, with the evidence filled in.
//!
//! certbot and lego are required on PATH (`.ci/run` installs them; nothing
//! skips); the instant-acme client and the broken one are this package's
//! `conformance-instant-acme` binary. Scenarios are chosen per client to
//! keep the file within a few minutes on two cores.

use kiln_tests::clients::require_binary;
use serde_json::Value;
use std::process::Output;

/// Runs `kiln conformance` with `flags` on `client`; its stdout, parsed
/// when it is JSON, and the whole output for messages.
async fn conformance(flags: &[&str], client: &[String]) -> (Output, Option<Value>, String) {
    kiln_tests::cluster::ensure_binaries_built().await;
    let mut command = tokio::process::Command::new(kiln_tests::cluster::binary("kiln"));
    command
        .arg("conformance")
        .args(flags)
        .args(["--timeout", "90s", "--"])
        .args(client)
        // Kiln's own log: warnings only, to keep the failure output short.
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(400), command.output())
        .await
        .expect("kiln conformance finishes")
        .expect("kiln conformance runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let context = format!(
        "kiln conformance {flags:?} -- {client:?}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    (out, serde_json::from_str(&stdout).ok(), context)
}

/// The scenario named `name` in a scorecard.
fn scenario<'a>(card: &'a Value, name: &str, context: &str) -> &'a Value {
    card["scenarios"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no scenario {name} in the scorecard\n{context}"))
}

fn verdict(card: &Value, name: &str, context: &str) -> String {
    scenario(card, name, context)["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The evidence every run has: an exit code, a time, the requests seen.
fn check_evidence(card: &Value, name: &str, context: &str) -> Value {
    let s = scenario(card, name, context);
    assert_eq!(s["required"], true, "{name}\n{context}");
    assert!(
        s["why"].as_str().is_some_and(|w| !w.is_empty()),
        "{context}"
    );
    let e = s["evidence"].clone();
    assert!(e["exit_code"].is_i64(), "{name}: exit code\n{context}");
    assert!(
        e["took_ms"].as_u64().is_some_and(|t| t > 0),
        "{name}\n{context}"
    );
    assert!(
        e["requests"].as_u64().is_some_and(|n| n >= 5),
        "{name}\n{context}"
    );
    assert!(
        e["orders"].as_u64().is_some_and(|n| n >= 1),
        "{name}\n{context}"
    );
    e
}

fn words(command: &[&str]) -> Vec<String> {
    command.iter().map(|w| w.to_string()).collect()
}

fn instant_acme(extra: &[&str]) -> Vec<String> {
    let mut command = words(&[
        env!("CARGO_BIN_EXE_conformance-instant-acme"),
        "--directory",
        "{directory}",
        "--root",
        "{root}",
        "--domain",
        "{domain}",
        "--http01-port",
        "{http01_port}",
        "--email",
        "{email}",
        "--out",
        "{workdir}/cert.pem",
    ]);
    command.extend(words(extra));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_polls_through_processing() {
    let certbot = require_binary("certbot", "pip install certbot");
    let certbot = certbot.display().to_string();
    let client = words(&[
        "env",
        "REQUESTS_CA_BUNDLE={root}",
        "XDG_CONFIG_HOME={workdir}",
        &certbot,
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "-m",
        "{email}",
        "--no-eff-email",
        "--server",
        "{directory}",
        "--config-dir",
        "{workdir}/config",
        "--work-dir",
        "{workdir}/work",
        "--logs-dir",
        "{workdir}/logs",
        "--standalone",
        "--preferred-challenges",
        "http",
        "--http-01-port",
        "{http01_port}",
        "--http-01-address",
        "127.0.0.1",
        "-d",
        "{domain}",
    ]);
    let flags = [
        "--json",
        "--scenario",
        "baseline,processing-polls,order-invalid",
    ];
    let (out, card, context) = conformance(&flags, &client).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    assert_eq!(card["client"], "certbot", "{context}");
    for name in ["baseline", "processing-polls", "order-invalid"] {
        assert_eq!(verdict(&card, name, &context), "PASS", "{name}\n{context}");
    }
    assert_eq!(
        (card["passed"].as_u64(), card["failed"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(
        out.status.success(),
        "every required scenario passed\n{context}"
    );
    let e = check_evidence(&card, "processing-polls", &context);
    assert_eq!(e["exit_code"], 0, "{context}");
    assert!(e["polls"].as_u64().is_some_and(|p| p >= 3), "{context}");
    assert_eq!(e["finalize_requests"], 1, "{context}");
    assert_eq!(e["certificate_downloaded"], true, "{context}");
    assert!(e["shortest_gap_ms"].is_i64(), "{context}");
    let e = check_evidence(&card, "order-invalid", &context);
    assert_eq!(e["order_status"], "invalid", "{context}");
    assert_eq!(e["reported_problem"], true, "{context}");
    assert!(
        e["last_error_line"]
            .as_str()
            .is_some_and(|l| l.contains("CAA")),
        "certbot's error names the problem\n{context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_retries_bad_nonces_and_survives_a_restart() {
    let lego = require_binary("lego", "apt-get install lego");
    let lego = lego.display().to_string();
    let client = words(&[
        "env",
        "LEGO_CA_CERTIFICATES={root}",
        &lego,
        "--server",
        "{directory}",
        "--accept-tos",
        "--email",
        "{email}",
        "--http",
        "--http.port",
        "127.0.0.1:{http01_port}",
        "--domains",
        "{domain}",
        "--path",
        "{workdir}",
        "run",
    ]);
    let flags = ["--json", "--scenario", "processing-polls,bad-nonce,restart"];
    let (out, card, context) = conformance(&flags, &client).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    assert_eq!(card["client"], "lego", "{context}");
    for name in ["processing-polls", "bad-nonce", "restart"] {
        assert_eq!(verdict(&card, name, &context), "PASS", "{name}\n{context}");
    }
    assert!(out.status.success(), "{context}");
    let e = check_evidence(&card, "bad-nonce", &context);
    assert_eq!(e["faults_injected"], 1, "{context}");
    assert_eq!(e["retried_after_fault"], true, "{context}");
    assert!(e["retry_wait_ms"].is_i64(), "{context}");
    let e = check_evidence(&card, "restart", &context);
    assert!(
        e["downtime_ms"].as_i64().is_some_and(|d| d >= 2_000),
        "Kiln was down 2 s\n{context}"
    );
    assert!(
        e["requests_after_restart"].as_u64().is_some_and(|n| n >= 1),
        "lego came back after the restart\n{context}"
    );
    assert_eq!(e["certificate_downloaded"], true, "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_acme_polls_again_when_retry_after_is_too_short() {
    let flags = [
        "--json",
        "--client-name",
        "instant-acme",
        "--scenario",
        "retry-after-too-short,unavailable",
    ];
    let (_, card, context) = conformance(&flags, &instant_acme(&[])).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    assert_eq!(card["client"], "instant-acme", "{context}");
    assert_eq!(
        verdict(&card, "retry-after-too-short", &context),
        "PASS",
        "{context}"
    );
    let e = check_evidence(&card, "retry-after-too-short", &context);
    assert!(e["polls"].as_u64().is_some_and(|p| p >= 2), "{context}");
    assert!(
        e["processing_ms"].as_i64().is_some_and(|p| p >= 6_000),
        "{context}"
    );
    // instant-acme (0.8, as locked) does not retry a 503 on finalize.
    assert_eq!(verdict(&card, "unavailable", &context), "FAIL", "{context}");
    let s = scenario(&card, "unavailable", &context);
    assert!(
        s["why"]
            .as_str()
            .is_some_and(|w| w.contains("did not retry")),
        "{context}"
    );
    let e = check_evidence(&card, "unavailable", &context);
    assert_eq!(e["faults_injected"], 1, "{context}");
    assert_eq!(e["retried_after_fault"], false, "{context}");
    assert!(
        e["last_error_line"]
            .as_str()
            .is_some_and(|l| l.contains("service unavailable")),
        "{context}"
    );
}

/// Finalizes, then fetches the certificate without polling: the client
/// that broke in Let's Encrypt's brownout. It copes with a synchronous
/// finalize and with nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_polls_fails_the_processing_scenarios() {
    let html = tempfile::tempdir().expect("temp dir");
    let page = html.path().join("scorecard.html");
    let page_arg = page.display().to_string();
    let flags = [
        "--json",
        "--html",
        &page_arg,
        "--client-name",
        "broken",
        "--scenario",
        "baseline,processing-polls,retry-after-too-short",
    ];
    let (out, card, context) = conformance(&flags, &instant_acme(&["--broken"])).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    assert_eq!(verdict(&card, "baseline", &context), "PASS", "{context}");
    for name in ["processing-polls", "retry-after-too-short"] {
        assert_eq!(verdict(&card, name, &context), "FAIL", "{name}\n{context}");
        let e = check_evidence(&card, name, &context);
        assert_eq!(e["exit_code"], 1, "{context}");
        assert_eq!(e["polls"], 0, "{name}: it never polled\n{context}");
        assert_eq!(e["certificate_downloaded"], false, "{context}");
        assert!(
            e["last_error_line"]
                .as_str()
                .is_some_and(|l| l.contains("without a certificate")),
            "{name}: the client's own error\n{context}"
        );
    }
    assert_eq!(
        (card["passed"].as_u64(), card["failed"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a required scenario failed\n{context}"
    );
    let page = std::fs::read_to_string(&page).expect("the HTML scorecard");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("processing-polls") && page.contains("class=\"v FAIL\""));

    // The text scorecard: a line per scenario, then the summary.
    let (out, _, context) =
        conformance(&["--scenario", "baseline"], &instant_acme(&["--broken"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(out.status.success(), "{context}");
    assert!(lines[0].starts_with("PASS  baseline"), "{context}");
    assert!(
        lines[0].contains("exit 0") && lines[0].contains("certificate downloaded"),
        "{context}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("conformance-instant-acme: 1 passed, 0 failed"),
        "{context}"
    );
}
