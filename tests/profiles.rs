//! Certificate profiles (draft-ietf-acme-profiles) through the HTTP API with
//! a real client (instant-acme): the directory offers `classic`,
//! `tlsserver` and `shortlived`; an order names one and shows it; the
//! certificate's lifetime and subject follow it; an unknown name is
//! `invalidProfile`. certbot's `--required-profile` is in tests/interop.rs.

use instant_acme::{Identifier, NewOrder, OrderStatus, RetryPolicy};
use kiln_tests::acme::Acme;
use kiln_tests::instant::{account, answer_http01};
use kiln_tests::{TestKiln, csr_der, parse_chain, serial_hex};
use openssl::nid::Nid;
use openssl::x509::X509;
use serde_json::json;
use std::time::Duration;

const INVALID_PROFILE: &str = "urn:ietf:params:acme:error:invalidProfile";

/// Orders `name` in `profile` (None: the default), issues it, and returns
/// the leaf with the order's `profile` field as the server showed it.
async fn issue_in(kiln: &TestKiln, name: &str, profile: Option<&str>) -> (X509, Option<String>) {
    let account = account(kiln).await;
    let ids = [Identifier::Dns(name.to_string())];
    let mut new_order = NewOrder::new(&ids);
    if let Some(profile) = profile {
        new_order = new_order.profile(profile);
    }
    let mut order = account.new_order(&new_order).await.expect("order created");
    answer_http01(&mut order, &kiln.http01).await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .timeout(Duration::from_secs(30));
    assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
    order.finalize_csr(&csr_der(&[name])).await.unwrap();
    let pem = order.poll_certificate(&retry).await.expect("issued");
    let shown = order.state().profile.clone();
    (parse_chain(&pem)[0].clone(), shown)
}

fn lifetime_secs(cert: &X509) -> i64 {
    let days_secs = cert.not_before().diff(cert.not_after()).unwrap();
    // RFC 5280 counts both ends: notAfter - notBefore + 1 s.
    i64::from(days_secs.days) * 86_400 + i64::from(days_secs.secs) + 1
}

fn common_name(cert: &X509) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| e.data().as_slice().to_vec())
        .map(|b| String::from_utf8(b).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_issues_its_lifetime_and_subject() {
    let kiln = TestKiln::start(None).await;
    let cases = [
        (None, "classic", 90 * 86_400, true),
        (Some("classic"), "classic", 90 * 86_400, true),
        (Some("tlsserver"), "tlsserver", 45 * 86_400, false),
        (Some("shortlived"), "shortlived", 160 * 3_600, false),
    ];
    for (i, (asked, shown, lifetime, has_cn)) in cases.into_iter().enumerate() {
        let name = format!("p{i}.profiles.test");
        let (leaf, order_profile) = issue_in(&kiln, &name, asked).await;
        assert_eq!(order_profile.as_deref(), Some(shown), "{asked:?}");
        assert_eq!(lifetime_secs(&leaf), lifetime, "{asked:?}");
        assert_eq!(
            common_name(&leaf).is_some(),
            has_cn,
            "{asked:?}: {:?}",
            common_name(&leaf)
        );
        let order = kiln
            .kiln
            .store
            .order_with_authzs(
                &kiln
                    .kiln
                    .store
                    .certificate(&serial_hex(&leaf))
                    .await
                    .unwrap()
                    .expect("on record")
                    .order_id,
            )
            .await
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(order.profile.name(), shown);
    }
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_offers_the_profiles_and_refuses_others() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let profiles = &acme.directory["meta"]["profiles"];
    let mut names: Vec<&str> = profiles
        .as_object()
        .expect("meta.profiles is an object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(names, ["classic", "shortlived", "tlsserver"]);
    assert!(
        profiles["shortlived"]
            .as_str()
            .unwrap()
            .contains("160 hours")
    );

    let account = acme.create_account().await;
    for unknown in ["longlived", "", "Classic"] {
        let reply = acme
            .new_order_reply(
                &account,
                &json!({
                    "identifiers": [{"type": "dns", "value": "x.profiles.test"}],
                    "profile": unknown,
                }),
            )
            .await;
        reply.expect_status(400);
        assert_eq!(reply.body["type"], INVALID_PROFILE, "{}", reply.text);
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap()
                .contains("classic, tlsserver, shortlived"),
            "{}",
            reply.text
        );
    }
    kiln.kiln.shutdown().await;
}
