use std::sync::Arc;
use std::time::{Duration, Instant};

use ct::test_util::{CtMarker, TestCa, TestLeaf};
use ct::{AddChainRequest, AddChainResponse, GetSthResponse, Sct};
use fake_ct_log::{FakeLog, FakeLogConfig, RunningLog, SubmissionStats};
use reqwest::StatusCode;

struct Fixture {
    ca: TestCa,
    leaf: TestLeaf,
    precert: Vec<u8>,
    issuer: Vec<u8>,
}

fn fixture() -> Fixture {
    let ca = TestCa::new("Fake Log Test CA").unwrap();
    let leaf = TestLeaf::new(&["example.com", "www.example.com"]).unwrap();
    let precert = leaf.precert_der(&ca).unwrap();
    let issuer = ca.der().unwrap();
    Fixture {
        ca,
        leaf,
        precert,
        issuer,
    }
}

async fn start(config: FakeLogConfig) -> RunningLog {
    RunningLog::start(Arc::new(FakeLog::new(config).unwrap()))
        .await
        .unwrap()
}

async fn post(url: &str, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
    let resp = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn submit(url: &str, path: &str, chain: &[&[u8]]) -> (StatusCode, String) {
    let body = serde_json::to_vec(&AddChainRequest::from_der_chain(chain)).unwrap();
    post(url, path, body).await
}

async fn get(url: &str, path: &str) -> (StatusCode, String) {
    let resp = reqwest::get(format!("{url}{path}")).await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn parse_sct(body: &str) -> Sct {
    let resp: AddChainResponse = serde_json::from_str(body).unwrap();
    Sct::try_from(&resp).unwrap()
}

#[tokio::test]
async fn precert_and_final_submissions_yield_verifiable_scts_and_sth() {
    let f = fixture();
    let running = start(FakeLogConfig::generate().unwrap()).await;
    let url = running.url();
    let spki = running.log.public_key_der().to_vec();

    let (status, body) = submit(&url, "/ct/v1/add-pre-chain", &[&f.precert, &f.issuer]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sct = parse_sct(&body);
    let tbs = ct::tbs_without_extension(&f.precert, ct::POISON_OID).unwrap();
    let ikh = ct::issuer_key_hash(&f.issuer).unwrap();
    let precert_data = ct::precert_signed_data(sct.timestamp, &ikh, &tbs, &sct.extensions).unwrap();
    ct::verify_sct(&sct, &spki, &precert_data).unwrap();

    // Embed it and log the final certificate too.
    let ext = ct::encode_sct_list_extension(&[sct]).unwrap();
    let final_der = f
        .leaf
        .build(&f.ca, CtMarker::SctList(&ext))
        .unwrap()
        .to_der()
        .unwrap();
    let (status, body) = submit(&url, "/ct/v1/add-chain", &[&final_der, &f.issuer]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let final_sct = parse_sct(&body);
    let final_data =
        ct::x509_signed_data(final_sct.timestamp, &final_der, &final_sct.extensions).unwrap();
    ct::verify_sct(&final_sct, &spki, &final_data).unwrap();

    // The tree head covers both entries, in order.
    let (status, body) = get(&url, "/ct/v1/get-sth").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sth: GetSthResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(sth.tree_size, 2);
    ct::verify_sth(&sth, &spki).unwrap();
    let expected =
        ct::merkle_tree_hash(&[ct::leaf_hash(&precert_data), ct::leaf_hash(&final_data)]);
    assert_eq!(sth.root_hash().unwrap(), expected);

    assert_eq!(running.log.submissions().accepted, 2);
    assert_eq!(running.log.submissions().accepted_x509, 1);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn bad_submissions_get_400() {
    let f = fixture();
    let running = start(FakeLogConfig::generate().unwrap()).await;
    let url = running.url();
    let plain = f
        .leaf
        .build(&f.ca, CtMarker::None)
        .unwrap()
        .to_der()
        .unwrap();
    let other_ca = TestCa::new("Someone Else").unwrap().der().unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/ct/v1/add-pre-chain", b"not json".to_vec()),
        ("/ct/v1/add-pre-chain", br#"{"chain":["***"]}"#.to_vec()),
        ("/ct/v1/add-chain", br#"{"chain":[]}"#.to_vec()),
        (
            "/ct/v1/add-pre-chain",
            serde_json::to_vec(&AddChainRequest::from_der_chain(&[&f.precert])).unwrap(),
        ),
        (
            "/ct/v1/add-pre-chain",
            serde_json::to_vec(&AddChainRequest::from_der_chain(&[&plain, &f.issuer])).unwrap(),
        ),
        (
            "/ct/v1/add-chain",
            serde_json::to_vec(&AddChainRequest::from_der_chain(&[&f.precert, &f.issuer])).unwrap(),
        ),
        (
            "/ct/v1/add-pre-chain",
            serde_json::to_vec(&AddChainRequest::from_der_chain(&[&f.precert, &other_ca])).unwrap(),
        ),
        (
            "/ct/v1/add-pre-chain",
            serde_json::to_vec(&AddChainRequest::from_der_chain(&[
                b"\x30\x00".as_slice(),
                &f.issuer,
            ]))
            .unwrap(),
        ),
    ];
    for (i, (path, body)) in cases.into_iter().enumerate() {
        let (status, text) = post(&url, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "case {i}: {text}");
        assert!(!text.is_empty() && text.len() < 200, "case {i}: {text}");
    }
    assert_eq!(running.log.submissions().rejected, 8);
    assert_eq!(running.log.tree_size(), 0);
}

#[tokio::test]
async fn knobs_down_error_and_reject_are_observed() {
    let f = fixture();
    let running = start(FakeLogConfig::generate().unwrap()).await;
    let url = running.url();
    let chain: [&[u8]; 2] = [&f.precert, &f.issuer];

    let (status, _) = post(&url, "/knobs", r#"{"down":true}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        submit(&url, "/ct/v1/add-pre-chain", &chain).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        submit(&url, "/ct/v1/add-chain", &chain).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&url, "/ct/v1/get-sth").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let (status, body) = post(&url, "/knobs", r#"{"down":false,"error_rate":1.0}"#).await;
    assert_eq!(status, StatusCode::OK);
    let knobs: fake_ct_log::Knobs = serde_json::from_str(&body).unwrap();
    assert!(!knobs.down);
    assert_eq!(knobs.error_rate, 1.0);
    assert_eq!(
        submit(&url, "/ct/v1/add-pre-chain", &chain).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let (status, _) = post(
        &url,
        "/knobs",
        r#"{"error_rate":0,"reject_names":["WWW.example.com"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = submit(&url, "/ct/v1/add-pre-chain", &chain).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("www.example.com"), "{text}");

    let other = TestLeaf::new(&["fine.example.org"])
        .unwrap()
        .precert_der(&f.ca)
        .unwrap();
    assert_eq!(
        submit(&url, "/ct/v1/add-pre-chain", &[&other, &f.issuer])
            .await
            .0,
        StatusCode::OK
    );

    assert_eq!(
        post(&url, "/knobs", r#"{"error_rate":2}"#).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&url, "/knobs", "nope").await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = get(&url, "/knobs").await;
    assert_eq!(status, StatusCode::OK);
    let knobs: fake_ct_log::Knobs = serde_json::from_str(&body).unwrap();
    assert_eq!(knobs.reject_names, ["WWW.example.com"]);
    assert_eq!(knobs.error_rate, 0.0);

    assert_eq!(
        running.log.submissions(),
        SubmissionStats {
            accepted: 1,
            accepted_x509: 0,
            rejected: 1,
            injected_errors: 1,
            unavailable: 2,
        }
    );
    assert_eq!(running.log.tree_size(), 1);
}

#[tokio::test]
async fn latency_knob_delays_answers() {
    let mut config = FakeLogConfig::generate().unwrap();
    config.latency = Duration::from_millis(300);
    let running = start(config).await;
    let started = Instant::now();
    assert_eq!(
        get(&running.url(), "/ct/v1/get-sth").await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn binary_prints_its_address_and_keeps_its_key() {
    use tokio::io::AsyncBufReadExt;

    let dir = std::env::temp_dir().join(format!("fake-ct-log-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("log.pem");
    let _ = std::fs::remove_file(&key);

    let mut first_key = None;
    for _ in 0..2 {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-ct-log"))
            .args(["--listen", "127.0.0.1:0", "--key"])
            .arg(&key)
            .args(["--reject-name", "a.example", "--reject-name", "b.example"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines.next_line().await.unwrap().unwrap();
        let public_key = lines.next_line().await.unwrap().unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(public_key.starts_with("public_key="), "{public_key}");

        let (status, body) = get(&url, "/knobs").await;
        assert_eq!(status, StatusCode::OK);
        let knobs: fake_ct_log::Knobs = serde_json::from_str(&body).unwrap();
        assert_eq!(knobs.reject_names, ["a.example", "b.example"]);

        // The second run reuses the key file, so the log keeps its identity.
        match &first_key {
            None => first_key = Some(public_key),
            Some(first) => assert_eq!(first, &public_key),
        }
        child.kill().await.unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
