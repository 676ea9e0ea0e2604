//! The claim on an order's sign-precert step (issue 16): a serial claims the
//! step in the transaction that writes it `precert-signing`, before any
//! signature, so two deliveries of one SignPrecert never both sign; a
//! `precert-signing` row has revocation status; a stale claim (its signer
//! died) is superseded by a fresh serial, the old one staying revocable; and
//! states this build does not know are read, not refused.

#[macro_use]
mod common;

use common::{ACCOUNT, at_sign_precert, issuer, new_certificate};
use domain::FinalizeStep;
use store::{CertificateState, NewCertificate, Store, now_ms};

on_both_backends!(url: of_concurrent_claims_of_one_order_exactly_one_wins);
on_both_backends!(
    a_precert_signing_row_is_revocable_and_on_its_crl_shard,
    a_stale_claim_is_superseded_with_a_fresh_serial,
    a_superseded_signer_still_records_its_precertificate,
    rows_in_states_this_build_does_not_know_are_read_and_revocable,
);

const ORDERS: usize = 12;
const DAY_MS: i64 = 86_400_000;

/// (a) Two signers (two connections, as two replicas have) claim each order
/// at once with serials of their own: exactly one claim commits, its serial
/// is the only row of the order, and the order names it.
async fn of_concurrent_claims_of_one_order_exactly_one_wins(store: Store, url: String) {
    let other = Store::connect(&url).await.unwrap();
    let now = now_ms();
    for i in 0..ORDERS {
        let id = format!("o{i}");
        at_sign_precert(&store, &id, now).await;
        let claim = |handle: &Store, serial: String| {
            let handle = handle.clone();
            let cert = new_certificate(&serial, &id);
            tokio::spawn(async move {
                handle
                    .claim_precert(&cert, None, now_ms(), now + 60_000)
                    .await
                    .unwrap()
            })
        };
        let (a, b) = (format!("{i:02x}0a"), format!("{i:02x}0b"));
        let (won_a, won_b) = (claim(&store, a.clone()), claim(&other, b.clone()));
        let (won_a, won_b) = (won_a.await.unwrap(), won_b.await.unwrap());
        assert!(won_a ^ won_b, "order {id}: exactly one claim wins");
        let winner = if won_a { a } else { b };
        let certs = store.certificates_for_order(&id).await.unwrap();
        assert_eq!(certs.len(), 1, "the loser wrote no row: {certs:#?}");
        assert_eq!(certs[0].serial, winner);
        assert_eq!(certs[0].state, CertificateState::PrecertSigning);
        let order = store.order(&id).await.unwrap().unwrap();
        assert_eq!(order.certificate_serial.as_deref(), Some(winner.as_str()));
        assert_eq!(order.step, Some(FinalizeStep::SignPrecert));
        assert_eq!(
            order.step_deadline,
            Some(now + 60_000),
            "the claim's deadline"
        );
    }
    other.close().await;
}

/// (b) A serial whose precertificate may have been signed, nothing stored:
/// the operator can revoke it, and its shard's CRL lists it.
async fn a_precert_signing_row_is_revocable_and_on_its_crl_shard(store: Store) {
    let now = now_ms();
    at_sign_precert(&store, "o1", now).await;
    let cert = NewCertificate {
        crl_shard: 3,
        not_after: now + DAY_MS,
        ..new_certificate("0c", "o1")
    };
    assert!(store.claim_precert(&cert, None, now, now).await.unwrap());
    let id = issuer().id;
    assert!(store.crl_shards_pending(&id).await.unwrap().is_empty());
    assert!(
        !store.revoke_certificate("0c", 1, now).await.unwrap(),
        "an ACME revocation needs the certificate"
    );
    assert!(store.revoke_by_operator("0c", 1, now).await.unwrap());
    assert!(!store.revoke_by_operator("0c", 1, now).await.unwrap());
    assert_eq!(store.crl_shards_pending(&id).await.unwrap(), vec![3]);
    let listed = store.crl_entries(&id, 3, now).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].serial.as_str(),
            listed[0].reason,
            listed[0].pending
        ),
        ("0c", Some(1), true)
    );
    assert!(store.crl_entries(&id, 0, now).await.unwrap().is_empty());
    let row = store.certificate("0c").await.unwrap().unwrap();
    assert_eq!(row.state, CertificateState::PrecertSigning);
    assert_eq!(row.revoked_at, Some(now));
}

/// (c) The signer that claimed died before storing: a later delivery finds
/// the claim stale and claims again with a fresh serial; the old serial
/// stays `precert-signing`, revocable, never the order's again.
async fn a_stale_claim_is_superseded_with_a_fresh_serial(store: Store) {
    let now = now_ms();
    at_sign_precert(&store, "o1", now).await;
    let claimed_at = now - 120_000;
    let old = new_certificate("0d", "o1");
    assert!(
        store
            .claim_precert(&old, None, claimed_at, claimed_at + 30_000)
            .await
            .unwrap()
    );
    assert_eq!(
        store.certificate("0d").await.unwrap().unwrap().created_at,
        claimed_at,
        "the claim's age is readable"
    );
    // A delivery that saw no claim cannot take the order over.
    assert!(
        !store
            .claim_precert(&new_certificate("0e", "o1"), None, now, now + 30_000)
            .await
            .unwrap()
    );
    // Two deliveries supersede the stale claim: one wins.
    let fresh = new_certificate("0f", "o1");
    assert!(
        store
            .claim_precert(&fresh, Some("0d"), now, now + 30_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_precert(&new_certificate("10", "o1"), Some("0d"), now, now + 30_000)
            .await
            .unwrap(),
        "superseded once"
    );
    let order = store.order("o1").await.unwrap().unwrap();
    assert_eq!(order.certificate_serial.as_deref(), Some("0f"));
    assert_eq!(order.step, Some(FinalizeStep::SignPrecert));
    let states: Vec<_> = store
        .certificates_for_order("o1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.serial, c.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("0d".to_string(), CertificateState::PrecertSigning),
            ("0f".to_string(), CertificateState::PrecertSigning),
        ]
    );
    // The order completes its step with the fresh serial.
    assert!(store.store_precert("o1", "0f", b"p", now).await.unwrap());
    let order = store.order("o1").await.unwrap().unwrap();
    assert_eq!(order.step, Some(FinalizeStep::SubmitCt));
    assert_eq!(
        store.certificate("0d").await.unwrap().unwrap().state,
        CertificateState::PrecertSigning,
        "the abandoned claim keeps its revocation status"
    );
    assert!(store.revoke_by_operator("0d", 0, now).await.unwrap());
    assert!(
        !store
            .claim_precert(&new_certificate("11", "o1"), Some("0d"), now, now)
            .await
            .unwrap(),
        "an order past sign-precert is claimed no more"
    );
}

/// A signer that stalled past the step timeout finishes after its claim was
/// superseded: its precertificate is recorded on its own serial, which
/// becomes `abandoned`, and the order is untouched.
async fn a_superseded_signer_still_records_its_precertificate(store: Store) {
    let now = now_ms();
    at_sign_precert(&store, "o1", now).await;
    let stale = now - 120_000;
    assert!(
        store
            .claim_precert(&new_certificate("1a", "o1"), None, stale, stale)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_precert(&new_certificate("1b", "o1"), Some("1a"), now, now)
            .await
            .unwrap()
    );
    assert!(
        !store.store_precert("o1", "1a", b"late", now).await.unwrap(),
        "the superseded claim does not move the order"
    );
    let late = store.certificate("1a").await.unwrap().unwrap();
    assert_eq!(late.state, CertificateState::Abandoned);
    assert_eq!(late.precert_der.as_deref(), Some(&b"late"[..]));
    let order = store.order("o1").await.unwrap().unwrap();
    assert_eq!(
        (order.step, order.certificate_serial.as_deref()),
        (Some(FinalizeStep::SignPrecert), Some("1b"))
    );
    // A claim whose order ended meanwhile keeps its precertificate too.
    assert!(
        store
            .fail_order("o1", &domain::Problem::internal())
            .await
            .unwrap()
    );
    assert!(
        !store
            .store_precert("o1", "1b", b"after", now)
            .await
            .unwrap()
    );
    let after = store.certificate("1b").await.unwrap().unwrap();
    assert_eq!(
        (after.state, after.precert_der.as_deref()),
        (CertificateState::Abandoned, Some(&b"after"[..]))
    );
}

/// A row a newer build wrote in a state this one does not know (a rolling
/// deploy), and a `reserved` row of a build before migration 15: both read,
/// both revocable and listed once revoked.
async fn rows_in_states_this_build_does_not_know_are_read_and_revocable(store: Store) {
    let now = now_ms();
    at_sign_precert(&store, "o1", now).await;
    let rows = [
        ("2a", "some-state-added-later", now),
        ("2b", "reserved", now + 1),
    ];
    for (serial, state, created_at) in rows {
        store
            .execute_admin(&format!(
                "INSERT INTO certificates (serial, order_id, account_id, state, not_before,
                                           not_after, created_at, issuer_id, spki_sha256)
                 VALUES ('{serial}', 'o1', '{ACCOUNT}', '{state}', {now}, {}, {created_at},
                         '{}', 'ab')",
                now + DAY_MS,
                issuer().id
            ))
            .await
            .unwrap();
    }
    let read: Vec<_> = store
        .certificates_for_order("o1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(
        read,
        vec![CertificateState::Unknown, CertificateState::Reserved]
    );
    for serial in ["2a", "2b"] {
        assert!(store.revoke_by_operator(serial, 4, now).await.unwrap());
    }
    let listed = store.crl_entries(&issuer().id, 0, now).await.unwrap();
    let serials: Vec<_> = listed.iter().map(|e| e.serial.as_str()).collect();
    assert_eq!(serials, ["2a", "2b"]);
}

/// What `certificates.state` holds (the golden vector) reads back as this
/// build's states, and a value added later reads as `Unknown`, never as an
/// error.
#[test]
fn stored_certificate_states_decode() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/certificate-state.v1.json");
    let vector: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |key: &str| -> Vec<String> {
        serde_json::from_value(vector[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}"))
    };
    use CertificateState as S;
    let written = [
        S::PrecertSigning,
        S::Precert,
        S::FinalSigning,
        S::Issued,
        S::Abandoned,
    ];
    let stored = strings("written");
    assert_eq!(stored.len(), written.len());
    for (text, state) in stored.iter().zip(written) {
        assert_eq!(text.parse::<S>(), Ok(state), "{text}");
        assert_eq!(state.as_str(), text, "written as stored");
    }
    assert_eq!(
        strings("written_before_migration_15"),
        [S::Reserved.as_str()]
    );
    assert_eq!("reserved".parse::<S>(), Ok(S::Reserved));
    for text in strings("added_later") {
        assert_eq!(text.parse::<S>(), Ok(S::Unknown), "{text:?}");
    }
}
