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

/// `kiln conformance FLAGS --timeout 90s -- CLIENT`, its temporary
/// directory (`TMPDIR`) `tmp` when given.
async fn command(
    flags: &[&str],
    client: &[String],
    tmp: Option<&std::path::Path>,
) -> tokio::process::Command {
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
    if let Some(tmp) = tmp {
        command.env("TMPDIR", tmp);
    }
    command
}

/// Runs `kiln conformance` with `flags` on `client`; its stdout, parsed
/// when it is JSON, and the whole output for messages.
async fn conformance(flags: &[&str], client: &[String]) -> (Output, Option<Value>, String) {
    conformance_in(None, flags, client).await
}

async fn conformance_in(
    tmp: Option<&std::path::Path>,
    flags: &[&str],
    client: &[String],
) -> (Output, Option<Value>, String) {
    let mut command = command(flags, client, tmp).await;
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
        "baseline,processing-polls,order-invalid,ari-renewal",
    ];
    let (out, card, context) = conformance(&flags, &client).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    assert_eq!(card["client"], "certbot", "{context}");
    for name in ["baseline", "processing-polls", "order-invalid"] {
        assert_eq!(verdict(&card, name, &context), "PASS", "{name}\n{context}");
    }
    // certbot's second `certonly` for the same name finds its lineage and
    // asks renewalInfo (certbot ≥ 4.1); the window is past, so it renews,
    // without `replaces` (certbot 5.8 does not send it).
    assert_eq!(verdict(&card, "ari-renewal", &context), "INFO", "{context}");
    let ari = &scenario(&card, "ari-renewal", &context)["evidence"];
    assert_eq!(ari["exit_code"], 0, "the first run issued\n{context}");
    assert!(
        ari["renewal_info_requests"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "certbot asked renewalInfo\n{context}"
    );
    assert_eq!(ari["renewed"], true, "{context}");
    assert_eq!(ari["renewal_exit_code"], 0, "{context}");
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
    let flags = [
        "--json",
        "--scenario",
        "processing-polls,bad-nonce,restart,dns-persist-01",
    ];
    let (out, card, context) = conformance(&flags, &client).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    assert_eq!(card["client"], "lego", "{context}");
    for name in ["processing-polls", "bad-nonce", "restart", "dns-persist-01"] {
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
    assert_eq!(
        e["processing_at_restart"], true,
        "the restart came while the order was processing\n{context}"
    );
    assert_eq!(e["certificate_downloaded"], true, "{context}");
    // lego ignores the challenge type it does not know.
    let e = check_evidence(&card, "dns-persist-01", &context);
    let offered = e["challenges_offered"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(offered.contains(&"dns-persist-01".into()), "{context}");
    assert_eq!(
        e["challenges_answered"],
        serde_json::json!(["http-01"]),
        "{context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_acme_polls_again_when_retry_after_is_too_short() {
    let flags = [
        "--json",
        "--client-name",
        "instant-acme",
        "--scenario",
        "retry-after-too-short,unavailable,ari-renewal",
    ];
    let (_, card, context) = conformance(&flags, &instant_acme(&["--ari"])).await;
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
    // With `--ari` the second run asks renewalInfo, finds the window past,
    // and renews naming the certificate in `replaces`.
    let s = scenario(&card, "ari-renewal", &context);
    assert_eq!(s["verdict"], "INFO", "{context}");
    assert_eq!(s["required"], false, "{context}");
    assert!(
        s["why"]
            .as_str()
            .is_some_and(|w| w.contains("renewed at once, naming the old certificate")),
        "{context}"
    );
    let e = &s["evidence"];
    assert_eq!(e["renewal_info_requests"], 1, "{context}");
    assert_eq!(
        (&e["renewed"], &e["renewal_exit_code"]),
        (&Value::Bool(true), &Value::from(0)),
        "{context}"
    );
    assert!(
        e["renewal_replaces"]
            .as_str()
            .is_some_and(|r| r.contains('.')),
        "a certID\n{context}"
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

/// The scratch directories `kiln conformance` left under `tmp`.
fn leftovers(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("kiln-conformance-"))
                .collect()
        })
        .unwrap_or_default()
}

/// A scenario that cannot be run (here: the client cannot be started) is
/// reported — FAIL when required — and the next one still runs; nothing
/// is left in the temporary directory (the CA's keys were there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_that_errors_is_reported_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let client = words(&["/nonexistent/acme-client", "{directory}"]);
    let flags = ["--json", "--scenario", "baseline,profile"];
    let (out, card, context) = conformance_in(Some(tmp.path()), &flags, &client).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    let names: Vec<&str> = card["scenarios"]
        .as_array()
        .map(|all| all.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["baseline", "profile"], "both ran\n{context}");
    let baseline = scenario(&card, "baseline", &context);
    assert_eq!(baseline["verdict"], "FAIL", "{context}");
    assert!(
        baseline["evidence"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("starting the client")),
        "{context}"
    );
    assert_eq!(verdict(&card, "profile", &context), "INFO", "{context}");
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new(), "{context}");
}

/// Kiln's request log keeps the latest 10,000 requests: a run that
/// overflows it is not judged (INFO, which fails a required scenario).
/// The "client" is curl fetching the directory 10,050 times on one
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_overflows_the_request_log_is_not_judged() {
    let curl = require_binary("curl", "apt-get install curl");
    let script = format!(
        "{} -sS --cacert \"$1\" \"$2?n=[1-10050]\" > /dev/null",
        curl.display()
    );
    let client = words(&["sh", "-c", &script, "curl", "{root}", "{directory}"]);
    let (out, card, context) = conformance(&["--json", "--scenario", "baseline"], &client).await;
    let card = card.unwrap_or_else(|| panic!("a JSON scorecard\n{context}"));
    let s = scenario(&card, "baseline", &context);
    assert_eq!(s["verdict"], "INFO", "{context}");
    assert!(
        s["why"]
            .as_str()
            .is_some_and(|w| w.starts_with("not judged")),
        "{context}"
    );
    assert!(
        s["evidence"]["requests_dropped"]
            .as_u64()
            .is_some_and(|n| n >= 50),
        "{context}"
    );
    assert_eq!(s["evidence"]["requests"], 10_000, "{context}");
    assert_eq!(out.status.code(), Some(1), "not passed\n{context}");
}

/// The pids a client wrote to `file`, one a line.
fn pids(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

/// Sends SIGINT to `kiln conformance` once `ready` holds, then expects it
/// to exit 130 within 30 s with no scorecard, every pid in `pid_file`
/// dead and nothing left in `tmp`.
async fn interrupt_when(
    tmp: &std::path::Path,
    script: &str,
    pid_file: &std::path::Path,
    ready: impl Fn() -> bool,
) {
    let client = words(&["sh", "-c", script]);
    let flags = ["--json", "--scenario", "baseline,processing-polls"];
    let mut command = command(&flags, &client, Some(tmp)).await;
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().expect("kiln conformance starts");
    let pid = child.id().expect("a pid").to_string();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(180), async {
        while !ready() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the client never got ready");
    let sent = std::process::Command::new("kill")
        .args(["-s", "INT", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kiln conformance stops within 30 s of SIGINT")
        .expect("its output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("{}\n{stderr}", out.status);
    assert_eq!(out.status.code(), Some(130), "{context}");
    assert!(stderr.contains("interrupted (SIGINT)"), "{context}");
    assert!(out.stdout.is_empty(), "no scorecard\n{context}");
    for pid in pids(pid_file) {
        assert!(
            !running(&pid),
            "the client's {pid} outlived kiln\n{context}"
        );
    }
    assert_eq!(leftovers(tmp), Vec::<String>::new(), "{context}");
}

/// Ctrl-C while the client runs kills it and what it started (it has its
/// own process group, so the terminal's SIGINT would not reach it), stops
/// Kiln, removes the scratch directory and exits 130; and so does one
/// between scenarios, which must not be swallowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_client_and_kiln_and_cleans_up() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let state = tempfile::tempdir().expect("state dir");
    let pid_file = state.path().join("pids");
    let hang = format!(
        "echo $$ >> {p}; sleep 300 & echo $! >> {p}; wait",
        p = pid_file.display()
    );
    interrupt_when(tmp.path(), &hang, &pid_file, || pids(&pid_file).len() >= 2).await;

    // The first scenario's client exits at once; the signal comes as Kiln
    // reads its records, stops, or starts the next scenario's.
    let marker = state.path().join("first-ran");
    let pid_file = state.path().join("pids-2");
    let quick_then_hang = format!(
        "if [ -e {m} ]; then echo $$ >> {p}; sleep 300 & echo $! >> {p}; wait; \
         else touch {m}; fi",
        m = marker.display(),
        p = pid_file.display()
    );
    interrupt_when(tmp.path(), &quick_then_hang, &pid_file, || marker.exists()).await;
}
