//! `kiln audit` (issue 16) on an all-in-one's data directory: certificates
//! issued by a real client (instant-acme) audit clean, and each corruption
//! written into (a copy of) the database is reported by the check it
//! breaks, with exit status 1.

use instant_acme::{Account, OrderStatus, RetryPolicy};
use kiln_tests::instant::{self, answer_http01, new_order};
use kiln_tests::{TestKiln, csr_der, parse_chain, serial_hex};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A certificate issued through the ACME API.
struct Issued {
    serial: String,
    order_id: String,
}

async fn issue(kiln: &TestKiln, account: &Account, names: &[&str]) -> Issued {
    let mut order = new_order(account, names).await;
    answer_http01(&mut order, &kiln.http01).await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .timeout(Duration::from_secs(30));
    assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
    order.finalize_csr(&csr_der(names)).await.unwrap();
    let pem = order.poll_certificate(&retry).await.expect("issued");
    let serial = serial_hex(&parse_chain(&pem)[0]);
    let row = kiln.kiln.store.certificate(&serial).await.unwrap().unwrap();
    Issued {
        serial,
        order_id: row.order_id,
    }
}

/// `kiln audit --data-dir DIR --json ARGS…`: its exit code and document.
fn audit(dir: &Path, args: &[&str]) -> (i32, Value) {
    let verdict = kiln_tests::audit::data_dir(dir, args);
    eprintln!("kiln audit {args:?}: {:?}", verdict.took);
    (verdict.code, verdict.doc)
}

fn check(doc: &Value, id: u64) -> &Value {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .expect("the check is reported")
}

/// Asserts check `id` reports a violation of `key` (`serial` or
/// `order_id`) `value` whose detail contains `detail`.
fn assert_found(doc: &Value, id: u64, key: &str, value: &str, detail: &str) {
    let c = check(doc, id);
    assert_eq!(c["status"], "fail", "check {id}: {c:#}");
    let found = c["violations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v[key] == value && v["detail"].as_str().unwrap().contains(detail));
    assert!(
        found,
        "check {id} does not report {key} {value} ({detail}): {c:#}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A copy of the stopped Kiln's data directory with `sql` applied.
async fn corrupted(clean: &Path, scratch: &Path, name: &str, sql: &str) -> PathBuf {
    let dir = scratch.join(name);
    copy_dir(clean, &dir);
    let url = format!("sqlite://{}", dir.join("kiln.db").display());
    let store = store::Store::connect(&url).await.unwrap();
    store.execute_admin(sql).await.unwrap();
    store.close().await;
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_issuance_audits_clean_and_each_corruption_is_found() {
    kiln_tests::cluster::ensure_binaries_built().await;
    let kiln = TestKiln::start(None).await;
    let account = instant::account(&kiln).await;
    let a = issue(&kiln, &account, &["a.audit.test", "b.audit.test"]).await;
    let b = issue(&kiln, &account, &["c.audit.test"]).await;
    let c = issue(&kiln, &account, &["d.audit.test"]).await;
    // An order left pending, for the order-state corruptions.
    let pending = new_order(&account, &["pending.audit.test"]).await;
    let pending_id = pending.url().rsplit('/').next().unwrap().to_string();
    let a_row = kiln
        .kiln
        .store
        .certificate(&a.serial)
        .await
        .unwrap()
        .unwrap();
    let TestKiln { kiln, data_dir, .. } = kiln;
    kiln.shutdown().await;
    let clean = data_dir.path();

    // Clean: every check passes; message accounting over the three
    // finalized orders, every step's message applied.
    let (code, doc) = audit(clean, &[]);
    assert_eq!((code, &doc["violations"]), (0, &Value::from(0)), "{doc:#}");
    for id in 1..=11 {
        let c = check(&doc, id);
        assert_eq!(c["status"], "pass", "{c:#}");
        assert!(c["checked"].as_u64().unwrap() > 0, "{c:#}");
    }
    assert_eq!(check(&doc, 10)["checked"], 4);
    assert_eq!(check(&doc, 7)["checked"], 3);
    assert_eq!(check(&doc, 11)["checked"], 3);
    let notes = check(&doc, 11)["notes"].to_string();
    assert!(
        notes.contains("12 applied, 0 in flight, 0 dead-lettered"),
        "{notes}"
    );
    // Text mode, and a run over nothing newer than an hour from now.
    let out = std::process::Command::new(kiln_tests::cluster::binary("kiln"))
        .args(["audit", "--data-dir"])
        .arg(clean)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("0 violation(s)"), "{text}");
    let later = (store::now_ms() + 3_600_000).to_string();
    let (code, doc) = audit(clean, &["--since", &later]);
    assert_eq!((code, &check(&doc, 10)["checked"]), (0, &Value::from(0)));

    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();

    // 1: a byte of a final certificate's TBS changed (its subject's CN).
    let mut final_der = a_row.final_der.clone().unwrap();
    let at = final_der
        .windows(12)
        .position(|w| w == b"a.audit.test")
        .unwrap();
    final_der[at] = b'z';
    let sql = format!(
        "UPDATE certificates SET final_der = X'{}' WHERE serial = '{}'",
        hex(&final_der),
        a.serial
    );
    let dir = corrupted(clean, scratch, "tbs", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(
        &doc,
        1,
        "serial",
        &a.serial,
        "TBS is not the precertificate's",
    );
    assert_found(&doc, 1, "serial", &a.serial, "not signed by its issuer");

    // 1: a final certificate paired with another order's precertificate.
    let sql = format!(
        "UPDATE certificates SET precert_der = (SELECT precert_der FROM certificates
                                                 WHERE serial = '{}')
         WHERE serial = '{}'",
        b.serial, a.serial
    );
    let dir = corrupted(clean, scratch, "swap", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(
        &doc,
        1,
        "serial",
        &a.serial,
        "TBS is not the precertificate's",
    );
    assert_found(&doc, 2, "serial", &a.serial, "precertificate's serial is");

    // 10: an order valid without a certificate.
    let sql = format!("UPDATE orders SET status = 'valid' WHERE id = '{pending_id}'");
    let dir = corrupted(clean, scratch, "valid", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(
        &doc,
        10,
        "order_id",
        &pending_id,
        "valid without a certificate",
    );

    // 10: an order stuck processing past its deadline.
    let sql = format!(
        "UPDATE orders SET status = 'processing', step = 'sign-precert', finalize_deadline = 1000
         WHERE id = '{pending_id}'"
    );
    let dir = corrupted(clean, scratch, "stuck", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(
        &doc,
        10,
        "order_id",
        &pending_id,
        "past its finalize deadline",
    );

    // 11: an order waiting at a step past the step's deadline (its
    // finalize deadline still ahead: check 11's, not check 10's), with no
    // dead letter but a stray one (a sign-precert job the validator got);
    // then, with the step's deadline ahead, its sign-precert job buried by
    // the signer long ago without the order being ended; and a challenge
    // left processing past its deadline.
    let ahead = store::now_ms() + 3_600_000;
    let waiting = |step_deadline: i64| {
        format!(
            "UPDATE orders SET status = 'processing', step = 'sign-precert',
                               processing_since = 1000, step_deadline = {step_deadline},
                               finalize_deadline = {ahead}
             WHERE id = '{pending_id}'"
        )
    };
    let dead_letter = |stage: &str| {
        format!(
            "INSERT INTO dead_letters (stage, job, subject_id, attempt, reason, dead_at)
             VALUES ('{stage}', 'sign-precert', '{pending_id}', 8, 'permanent: test', 1500)"
        )
    };
    let sql = format!("{}; {}", waiting(2000), dead_letter("validator"));
    let dir = corrupted(clean, scratch, "lost", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(
        &doc,
        11,
        "order_id",
        &pending_id,
        "its sign-precert message is neither applied nor dead-lettered",
    );
    assert_eq!(check(&doc, 10)["status"], "pass", "{doc:#}");
    let sql = format!("{}; {}", waiting(ahead), dead_letter("signer"));
    let dir = corrupted(clean, scratch, "buried", &sql).await;
    // The same found page by page and, with --since, order by order.
    for args in [&[][..], &["--since", &later][..]] {
        let (code, doc) = audit(&dir, args);
        assert_eq!(code, 1, "{args:?}");
        assert_found(
            &doc,
            11,
            "order_id",
            &pending_id,
            "dead-lettered by signer (permanent: test)",
        );
        assert_found(
            &doc,
            11,
            "order_id",
            &pending_id,
            "without the order being ended",
        );
    }
    let sql = format!(
        "UPDATE challenges SET status = 'processing', deadline = 2000
         WHERE authz_id IN (SELECT id FROM authzs WHERE order_id = '{pending_id}')"
    );
    let dir = corrupted(clean, scratch, "challenge", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(
        &doc,
        11,
        "order_id",
        &pending_id,
        "its validation message is neither applied nor dead-lettered",
    );

    // A database behind this build is refused (exit 2), not misread.
    let sql = "DELETE FROM _sqlx_migrations
               WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    let dir = corrupted(clean, scratch, "behind", sql).await;
    let out = std::process::Command::new(kiln_tests::cluster::binary("kiln"))
        .args(["audit", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run `kiln migrate`"),
        "{out:?}"
    );

    // 3 and 10: an order's issued certificate stored twice.
    let twin = format!("01{}", "ab".repeat(17));
    let sql = format!(
        "INSERT INTO certificates (serial, order_id, account_id, state, not_before, not_after,
                                   created_at, precert_der, sct_list, final_der, issuer_id,
                                   spki_sha256, crl_shard)
         SELECT '{twin}', order_id, account_id, state, not_before, not_after, created_at,
                precert_der, sct_list, final_der, issuer_id, spki_sha256, crl_shard
         FROM certificates WHERE serial = '{}'",
        c.serial
    );
    let dir = corrupted(clean, scratch, "twin", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(&doc, 3, "order_id", &c.order_id, "2 final certificates");
    assert_found(&doc, 10, "order_id", &c.order_id, "2 issued certificates");
    assert_found(&doc, 2, "serial", &twin, "not its row's");

    // 2: a 32-bit serial.
    let sql = format!(
        "INSERT INTO certificates (serial, order_id, account_id, state, not_before, not_after,
                                   created_at, issuer_id, crl_shard)
         SELECT '01020304', order_id, account_id, 'precert-signing', not_before, not_after,
                created_at, issuer_id, crl_shard
         FROM certificates WHERE serial = '{}'",
        b.serial
    );
    let dir = corrupted(clean, scratch, "short", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(&doc, 2, "serial", "01020304", "32 bits");

    // 6: a key blocked before its certificate was issued.
    let sql = "INSERT INTO blocked_keys (spki_sha256, comment, created_at)
               SELECT spki_sha256, 'test', 0 FROM certificates WHERE serial = '"
        .to_string()
        + &b.serial
        + "'";
    let dir = corrupted(clean, scratch, "blocked", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(&doc, 6, "serial", &b.serial, "blocklist");

    // 4: an authorization that expired before issuance.
    let sql = format!(
        "UPDATE authzs SET expires_at = 1000 WHERE order_id = '{}'",
        b.order_id
    );
    let dir = corrupted(clean, scratch, "expired", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(&doc, 4, "serial", &b.serial, "expired");

    // 5: CAA checked at validation long before issuance, and no recheck.
    let sql = format!(
        "UPDATE authzs SET validated_at = 1000 WHERE order_id = '{0}';
         UPDATE orders SET caa_checked_at = NULL WHERE id = '{0}'",
        a.order_id
    );
    let dir = corrupted(clean, scratch, "caa", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(
        &doc,
        5,
        "serial",
        &a.serial,
        "b.audit.test: CAA was last checked",
    );

    // 9: revoked and marked published, yet on no CRL.
    let sql = format!(
        "UPDATE certificates SET revoked_at = {}, revoked_reason = 4, crl_pending = 0
         WHERE serial = '{}'",
        store::now_ms(),
        b.serial
    );
    let dir = corrupted(clean, scratch, "revoked", &sql).await;
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 1);
    assert_found(&doc, 9, "serial", &b.serial, "revoked and marked published");

    // 7: SCTs from logs the audit does not know; no keys at all is
    // not-checked, never a pass.
    let dir = scratch.join("nologs");
    copy_dir(clean, &dir);
    std::fs::remove_dir_all(dir.join("ct-logs")).unwrap();
    let (code, doc) = audit(&dir, &[]);
    assert_eq!(code, 0);
    assert_eq!(check(&doc, 7)["status"], "not-checked");
    assert!(
        check(&doc, 7)["why_not_checked"]
            .as_str()
            .unwrap()
            .contains("--ct-log")
    );
    use base64::Engine as _;
    let stranger = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let stranger = openssl::pkey::PKey::from_ec_key(stranger).unwrap();
    let key =
        base64::engine::general_purpose::STANDARD.encode(stranger.public_key_to_der().unwrap());
    let (code, doc) = audit(&dir, &["--ct-log", &format!("http://127.0.0.1:1={key}")]);
    assert_eq!(code, 1);
    assert_found(&doc, 7, "serial", &a.serial, "from no configured log");

    // 2: no database is a usage error, not a pass.
    let out = std::process::Command::new(kiln_tests::cluster::binary("kiln"))
        .args(["audit", "--data-dir"])
        .arg(scratch.join("nothing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
