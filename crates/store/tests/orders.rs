//! Orders, authorizations and challenges: stored together, and validation's
//! transitions carrying an authorization and its order along.

#[macro_use]
mod common;

use common::{ACCOUNT, make_ready, pending_order};
use domain::{AuthzStatus, ChallengeStatus, OrderStatus, Problem, ProblemKind};
use store::{Store, now_ms};

on_both_backends!(
    an_order_is_stored_with_its_authorizations_and_challenges,
    an_order_becomes_ready_when_every_name_is_validated,
    a_failed_challenge_invalidates_its_order,
    deactivating_an_authorization_invalidates_its_order,
    an_accounts_orders_are_listed_oldest_first,
    an_order_keeps_its_certificate_profile,
);

async fn an_order_keeps_its_certificate_profile(store: Store) {
    store
        .insert_account(&common::account(ACCOUNT))
        .await
        .unwrap();
    for (id, profile) in [
        ("o1", domain::CertificateProfile::Classic),
        ("o2", domain::CertificateProfile::TlsServer),
        ("o3", domain::CertificateProfile::ShortLived),
    ] {
        let (mut o, authzs) = common::order(id, ACCOUNT, &[&format!("{id}.kiln.test")]);
        o.profile = profile;
        store.insert_order(&o, &authzs).await.unwrap();
        assert_eq!(store.order(id).await.unwrap().unwrap().profile, profile);
        let (joined, _) = store.order_with_authzs(id).await.unwrap().unwrap();
        assert_eq!(joined.profile, profile);
    }
}

async fn an_order_is_stored_with_its_authorizations_and_challenges(store: Store) {
    store
        .insert_account(&common::account(ACCOUNT))
        .await
        .unwrap();
    let (o, authzs) = common::order("o1", ACCOUNT, &["a.kiln.test", "b.kiln.test"]);
    store.insert_order(&o, &authzs).await.unwrap();
    assert_eq!(store.order("o1").await.unwrap().unwrap(), o);
    assert_eq!(store.authzs_for_order("o1").await.unwrap().len(), 2);
    let stored: Vec<_> = authzs.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(store.authzs_for_order("o1").await.unwrap(), stored);
    assert_eq!(
        store.order_with_authzs("o1").await.unwrap(),
        Some((o.clone(), stored.clone())),
        "the joined read is the two reads"
    );
    for (authz, challenges) in &authzs {
        assert_eq!(store.authz(&authz.id).await.unwrap().as_ref(), Some(authz));
        assert_eq!(
            store.authz_with_challenges(&authz.id).await.unwrap(),
            Some((authz.clone(), challenges.clone())),
            "the joined read is the authorization and its challenges"
        );
        for challenge in challenges {
            assert_eq!(
                store.challenge_with_authz(&challenge.id).await.unwrap(),
                Some((challenge.clone(), authz.clone()))
            );
        }
        assert_eq!(
            &store.challenges_for_authz(&authz.id).await.unwrap(),
            challenges
        );
        assert_eq!(
            store.challenge(&challenges[0].id).await.unwrap().as_ref(),
            Some(&challenges[0])
        );
    }
    assert_eq!(store.order("nope").await.unwrap(), None);
    assert_eq!(store.order_with_authzs("nope").await.unwrap(), None);
    assert_eq!(store.authz("nope").await.unwrap(), None);
    assert_eq!(store.challenge("nope").await.unwrap(), None);
    assert_eq!(store.authz_with_challenges("nope").await.unwrap(), None);
    assert_eq!(store.challenge_with_authz("nope").await.unwrap(), None);
    assert!(store.challenges_for_authz("nope").await.unwrap().is_empty());
}

async fn an_order_becomes_ready_when_every_name_is_validated(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test", "b.kiln.test"]).await;
    assert!(
        store
            .start_challenge("o1-c0", now_ms() + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .start_challenge("o1-c0", now_ms() + 1000)
            .await
            .unwrap(),
        "CAS: once"
    );
    assert!(
        store
            .finish_challenge("o1-c0", Ok(()), now_ms())
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_challenge("o1-c0", Ok(()), now_ms())
            .await
            .unwrap()
    );
    assert_eq!(
        store.order("o1").await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
    let a0 = store.authz("o1-a0").await.unwrap().unwrap();
    assert_eq!(a0.status, AuthzStatus::Valid);
    assert!(a0.validated_at.is_some());
    // One name valid, the other and the order pending: the joined read
    // keeps each row's own status and times apart.
    let (order, authzs) = store.order_with_authzs("o1").await.unwrap().unwrap();
    assert_eq!(order, store.order("o1").await.unwrap().unwrap());
    assert_eq!(authzs, store.authzs_for_order("o1").await.unwrap());
    assert_eq!(
        authzs.iter().map(|a| a.status).collect::<Vec<_>>(),
        [AuthzStatus::Valid, AuthzStatus::Pending]
    );
    let c0 = store.challenge("o1-c0").await.unwrap().unwrap();
    assert_eq!((c0.status, &c0.error), (ChallengeStatus::Valid, &None));
    let (joined_c0, joined_a0) = store.challenge_with_authz("o1-c0").await.unwrap().unwrap();
    assert_eq!((joined_c0, joined_a0), (c0.clone(), a0.clone()));
    let (_, a0_challenges) = store.authz_with_challenges("o1-a0").await.unwrap().unwrap();
    assert_eq!(
        a0_challenges,
        store.challenges_for_authz("o1-a0").await.unwrap()
    );
    assert!(
        store
            .start_challenge("o1-c1", now_ms() + 1000)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_challenge("o1-c1", Ok(()), now_ms())
            .await
            .unwrap()
    );
    assert_eq!(
        store.order("o1").await.unwrap().unwrap().status,
        OrderStatus::Ready
    );
}

async fn a_failed_challenge_invalidates_its_order(store: Store) {
    pending_order(&store, "o3", &["d.kiln.test"]).await;
    store.start_challenge("o3-c0", now_ms() - 1).await.unwrap();
    let bad = Problem::new(ProblemKind::IncorrectResponse, "nope");
    store
        .finish_challenge("o3-c0", Err(&bad), now_ms())
        .await
        .unwrap();
    assert_eq!(
        store.order("o3").await.unwrap().unwrap().status,
        OrderStatus::Invalid
    );
    assert_eq!(
        store.challenge("o3-c0").await.unwrap().unwrap().error,
        Some(bad)
    );
    assert_eq!(
        store.authz("o3-a0").await.unwrap().unwrap().status,
        AuthzStatus::Invalid
    );
}

async fn deactivating_an_authorization_invalidates_its_order(store: Store) {
    pending_order(&store, "o4", &["e.kiln.test"]).await;
    assert!(store.deactivate_authz("o4-a0").await.unwrap());
    assert!(!store.deactivate_authz("o4-a0").await.unwrap());
    assert_eq!(
        store.order("o4").await.unwrap().unwrap().status,
        OrderStatus::Invalid
    );
    assert!(
        !store
            .start_challenge("o4-c0", now_ms() + 1000)
            .await
            .unwrap(),
        "a deactivated authorization is not validated"
    );
}

async fn an_accounts_orders_are_listed_oldest_first(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test", "b.kiln.test"]).await;
    make_ready(&store, "o1", 2).await;
    assert_eq!(
        store.order_ids_for_account("acct1", 0, 10).await.unwrap(),
        vec!["o1"]
    );
    let (mut later, authzs) = common::order("o2", ACCOUNT, &["c.kiln.test"]);
    later.created_at += 1;
    store.insert_order(&later, &authzs).await.unwrap();
    assert_eq!(
        store.order_ids_for_account("acct1", 0, 10).await.unwrap(),
        vec!["o1", "o2"]
    );
    assert_eq!(
        store.order_ids_for_account("acct1", 1, 10).await.unwrap(),
        vec!["o2"]
    );
    assert_eq!(
        store.order_ids_for_account("acct1", 0, 1).await.unwrap(),
        vec!["o1"]
    );
    assert!(
        store
            .order_ids_for_account("nobody", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
