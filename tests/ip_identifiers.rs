//! IP-address identifiers (RFC 8738) end to end, with instant-acme against
//! the all-in-one: a `shortlived` order for 127.0.0.1 and one for ::1 are
//! validated over http-01 at the address itself and yield 160-hour
//! certificates whose SANs are exactly those iPAddresses; the other
//! profiles refuse addresses; dns-01 is never offered for one; reserved
//! and non-canonical addresses are refused; a CSR naming the address as a
//! dNSName is `badCSR`.

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use kiln_tests::TestKiln;
use kiln_tests::acme::Acme;
use kiln_tests::instant::{account, answer_http01};
use kiln_tests::{csr_der, parse_chain};
use std::net::IpAddr;
use std::time::Duration;

fn retries() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .timeout(Duration::from_secs(30))
}

async fn ip_order(account: &Account, address: &str, profile: &str) -> Order {
    let ids = [Identifier::Ip(address.parse().unwrap())];
    account
        .new_order(&NewOrder::new(&ids).profile(profile))
        .await
        .expect("order created")
}

/// The iPAddress SANs of a certificate, as addresses, and whether it has
/// any other SAN or a subject CN.
fn ip_sans(leaf: &openssl::x509::X509) -> (Vec<IpAddr>, bool) {
    let mut ips = Vec::new();
    let mut other = leaf
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .is_some();
    for name in leaf.subject_alt_names().into_iter().flatten() {
        match name.ipaddress() {
            Some(o) if o.len() == 4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(o).unwrap())),
            Some(o) if o.len() == 16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(o).unwrap())),
            _ => other = true,
        }
    }
    (ips, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortlived_certificates_for_127_0_0_1_and_for_the_ipv6_loopback() {
    let kiln = TestKiln::start(None).await;
    let account = account(&kiln).await;
    for address in ["127.0.0.1", "::1"] {
        let mut order = ip_order(&account, address, "shortlived").await;
        {
            let mut authzs = order.authorizations();
            let authz = authzs.next().await.unwrap().unwrap();
            let offered: Vec<ChallengeType> =
                authz.challenges.iter().map(|c| c.r#type.clone()).collect();
            assert_eq!(
                offered,
                [ChallengeType::Http01, ChallengeType::TlsAlpn01],
                "{address}: never dns-01 (RFC 8738 §7)"
            );
            assert_eq!(authz.status, AuthorizationStatus::Pending);
        }
        answer_http01(&mut order, &kiln.http01).await;
        assert_eq!(
            order.poll_ready(&retries()).await.unwrap(),
            OrderStatus::Ready
        );
        order
            .finalize_csr(&csr_der(&[address]))
            .await
            .expect("finalized");
        let pem = order.poll_certificate(&retries()).await.expect("issued");
        let leaf = parse_chain(&pem)[0].clone();
        let (ips, other) = ip_sans(&leaf);
        assert_eq!(ips, [address.parse::<IpAddr>().unwrap()], "{address}");
        assert!(!other, "{address}: no dNSName, no common name");
        let span = leaf.not_before().diff(leaf.not_after()).unwrap();
        let lifetime = i64::from(span.days) * 86_400 + i64::from(span.secs) + 1;
        assert_eq!(
            lifetime,
            160 * 3600,
            "{address}: the shortlived profile's 160 h"
        );
    }
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_outside_shortlived_reserved_or_miswritten_are_refused() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let acct = acme.create_account().await;
    let new_order = |value: &str, profile: Option<&str>| {
        let mut payload = serde_json::json!({"identifiers": [{"type": "ip", "value": value}]});
        if let Some(profile) = profile {
            payload["profile"] = serde_json::json!(profile);
        }
        payload
    };
    for (value, profile, why) in [
        ("127.0.0.1", None, "shortlived"),
        ("127.0.0.1", Some("tlsserver"), "shortlived"),
        ("10.0.0.1", Some("shortlived"), "reserved"),
        ("0:0:0:0:0:0:0:1", Some("shortlived"), "canonical"),
        ("127.0.0.01", Some("shortlived"), "not an IP address"),
    ] {
        let reply = acme
            .new_order_reply(&acct, &new_order(value, profile))
            .await;
        reply.expect_problem(400, "rejectedIdentifier");
        let sub = &reply.body["subproblems"][0];
        let detail = sub["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{value} {profile:?}: {}", reply.body);
        assert_eq!(sub["identifier"]["type"], "ip", "{value}");
    }
    // A DNS name that spells an address is no DNS name.
    let dns_spelled = serde_json::json!({"identifiers": [{"type": "dns", "value": "127.0.0.1"}]});
    acme.new_order_reply(&acct, &dns_spelled)
        .await
        .expect_problem(400, "rejectedIdentifier");
    let unknown = serde_json::json!({"identifiers": [{"type": "email", "value": "a@b.test"}]});
    acme.new_order_reply(&acct, &unknown)
        .await
        .expect_problem(400, "unsupportedIdentifier");
    kiln.kiln.shutdown().await;
}

/// The CSR must name the address as an iPAddress (RFC 8555 §7.4 compares
/// identifiers, not strings): a dNSName "127.0.0.1" is `badCSR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_spelling_the_address_as_a_dns_name_is_bad() {
    let kiln = TestKiln::start(None).await;
    let account = account(&kiln).await;
    let mut order = ip_order(&account, "127.0.0.1", "shortlived").await;
    answer_http01(&mut order, &kiln.http01).await;
    assert_eq!(
        order.poll_ready(&retries()).await.unwrap(),
        OrderStatus::Ready
    );
    let spelled = spelled_csr("127.0.0.1");
    let err = order.finalize_csr(&spelled).await.unwrap_err().to_string();
    assert!(err.contains("badCSR") || err.contains("CSR names"), "{err}");
    kiln.kiln.shutdown().await;
}

/// A CSR whose one SAN is the dNSName `name`.
fn spelled_csr(name: &str) -> Vec<u8> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::stack::Stack;
    use openssl::x509::X509ReqBuilder;
    use openssl::x509::extension::SubjectAlternativeName;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut builder = X509ReqBuilder::new().unwrap();
    builder.set_pubkey(&key).unwrap();
    let san = SubjectAlternativeName::new()
        .dns(name)
        .build(&builder.x509v3_context(None))
        .unwrap();
    let mut extensions = Stack::new().unwrap();
    extensions.push(san).unwrap();
    builder.add_extensions(&extensions).unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    builder.build().to_der().unwrap()
}
