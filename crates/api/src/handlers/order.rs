//! Orders (RFC 8555 §7.4): new-order and reading an order, plus the
//! ownership check and the order answer that finalize shares. An order may
//! replace a certificate (RFC 9773 §5, `replaces`): checked by
//! `renewal_info`, claimed by the store as the order is inserted, and shown
//! in the order object.

use super::auth::{Body, KeyRule, PathId, authenticate, not_yours};
use super::renewal_info::replaced_serial;
use super::response::{Reply, processing_retry_after};
use super::{ApiResult, Shared, random_id};
use crate::Api;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use domain::{
    AuthzStatus, CertificateProfile, ChallengeStatus, Identifier, OrderStatus, Problem, ProblemKind,
};
use serde::Deserialize;
use std::collections::BTreeSet;
use store::{Account, Authz, Challenge, Order, now_ms};

/// Most identifiers one order may name (Let's Encrypt allows 100).
const MAX_IDENTIFIERS: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrderPayload {
    identifiers: Vec<Identifier>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
    /// The certID of the certificate this order renews (RFC 9773 §5).
    #[serde(default)]
    replaces: Option<String>,
    /// A profile the directory offers (draft-ietf-acme-profiles); absent
    /// is the default.
    #[serde(default)]
    profile: Option<String>,
}

pub async fn new_order(
    State(api): Shared,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    let payload: NewOrderPayload = req.json()?;
    if payload.not_before.is_some() || payload.not_after.is_some() {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "notBefore and notAfter are not supported; omit them",
        ));
    }
    let profile = match payload.profile.as_deref() {
        None => CertificateProfile::default(),
        Some(name) => CertificateProfile::from_name(name).ok_or_else(|| {
            let offered: Vec<&str> = CertificateProfile::ALL.iter().map(|p| p.name()).collect();
            ApiError::new(
                ProblemKind::InvalidProfile,
                format!(
                    "no profile {name:?}; the directory's meta.profiles offers {}",
                    offered.join(", ")
                ),
            )
        })?,
    };
    if payload.identifiers.is_empty() {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "an order needs at least one identifier",
        ));
    }
    if payload.identifiers.len() > MAX_IDENTIFIERS {
        return Err(ApiError::new(
            ProblemKind::RejectedIdentifier,
            format!("an order may name at most {MAX_IDENTIFIERS} identifiers"),
        ));
    }
    let mut identifiers = BTreeSet::new();
    let mut rejected = Vec::new();
    for id in &payload.identifiers {
        match api.config.identifiers.check_identifier(id) {
            Ok(checked) if checked.kind == Identifier::IP && !profile.allows_ip_identifiers() => {
                rejected.push(
                    Problem::new(
                        ProblemKind::RejectedIdentifier,
                        format!(
                            "{:?}: IP addresses are issued for only in the \"shortlived\" \
                             profile, not \"{profile}\"",
                            id.value
                        ),
                    )
                    .for_identifier(id.clone()),
                );
            }
            Ok(checked) => {
                identifiers.insert(checked);
            }
            // An unknown type is the whole order's problem (RFC 8555 §6.7).
            Err(p) if p.kind == ProblemKind::UnsupportedIdentifier => return Err(p.into()),
            Err(p) => rejected.push(p.for_identifier(id.clone())),
        }
    }
    let names: BTreeSet<String> = identifiers.iter().map(|i| i.value.clone()).collect();
    if !rejected.is_empty() {
        let detail = format!("{} identifier(s) cannot be issued for", rejected.len());
        return Err(Problem::new(ProblemKind::RejectedIdentifier, detail)
            .with_subproblems(rejected)
            .into());
    }
    let account = req.account();
    let replaced_serial = match &payload.replaces {
        Some(cert_id) => Some(replaced_serial(&api, &account.id, &names, cert_id).await?),
        None => None,
    };
    let now = now_ms();
    let requested: Vec<String> = names.iter().cloned().collect();
    let limiter = &api.rate_limiter;
    limiter
        .check_new_order(
            &api.store,
            &account.id,
            &requested,
            &api.config.identifiers,
            now,
        )
        .await?;
    let order = Order {
        id: random_id(16),
        account_id: account.id.clone(),
        status: OrderStatus::Pending,
        step: None,
        identifiers: identifiers.into_iter().collect(),
        not_before: None,
        not_after: None,
        expires_at: now + api.config.order_lifetime.as_millis() as i64,
        created_at: now,
        csr: None,
        processing_since: None,
        step_deadline: None,
        finalize_deadline: None,
        error: None,
        certificate_serial: None,
        timeline: Default::default(),
        replaces: payload.replaces.clone(),
        profile,
    };
    let mut authzs = Vec::new();
    for identifier in &order.identifiers {
        if let Some(reused) = reused_authz(&api, &order, identifier, now).await? {
            authzs.push(reused);
            continue;
        }
        let authz = Authz {
            id: random_id(16),
            order_id: order.id.clone(),
            account_id: account.id.clone(),
            identifier: identifier.authz_name().to_string(),
            wildcard: identifier.is_wildcard(),
            status: AuthzStatus::Pending,
            expires_at: now + api.config.authz_lifetime.as_millis() as i64,
            validated_at: None,
        };
        let challenges = domain::challenge_types_for(identifier)
            .filter(|kind| api.config.challenge_types.contains(kind))
            .map(|kind| Challenge {
                id: random_id(16),
                authz_id: authz.id.clone(),
                kind,
                token: random_id(32),
                status: ChallengeStatus::Pending,
                validated_at: None,
                error: None,
            })
            .collect::<Vec<_>>();
        if challenges.is_empty() {
            // e.g. a wildcard where only http-01 is offered.
            return Err(ApiError::new(
                ProblemKind::UnsupportedIdentifier,
                format!(
                    "none of the challenge types this CA offers can validate {}",
                    identifier.value
                ),
            ));
        }
        authzs.push((authz, challenges));
    }
    // Every authorization reused: the order is ready as it is stored, which
    // finalize's compare-and-set requires (no validation will move it).
    let mut order = order;
    if authzs.iter().all(|(a, _)| a.status == AuthzStatus::Valid) {
        order.status = OrderStatus::Ready;
    }
    match &replaced_serial {
        None => api.store.insert_order(&order, &authzs).await?,
        Some(serial) => {
            if !api
                .store
                .insert_replacing_order(&order, &authzs, serial)
                .await?
            {
                return Err(ApiError::new(
                    ProblemKind::AlreadyReplaced,
                    format!(
                        "certificate {serial} already has a replacement order that is not \
                         invalid (RFC 9773 §5); renew without \"replaces\""
                    ),
                ));
            }
        }
    }
    limiter.note_new_order(&api.store, &account.id, now).await;
    let authzs: Vec<Authz> = authzs.into_iter().map(|(a, _)| a).collect();
    Ok(Reply::ok(api.order_json(&order, &authzs))
        .status(StatusCode::CREATED)
        .location(api.order_url(&order.id))
        .into_response())
}

/// The order, if the account owns it.
pub(super) async fn owned_order(
    api: &Api,
    id: &str,
    account: &Account,
) -> Result<(Order, Vec<Authz>), ApiError> {
    let (order, authzs) = api
        .store
        .order_with_authzs(id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if order.account_id != account.id {
        return Err(not_yours("order"));
    }
    Ok((order, authzs))
}

pub(super) fn order_reply(api: &Api, order: &Order, authzs: &[Authz]) -> Reply {
    let processing = api.order_status(order, authzs) == OrderStatus::Processing;
    Reply::ok(api.order_json(order, authzs))
        .location(api.order_url(&order.id))
        .retry_after(processing_retry_after(api, processing))
}

pub async fn order(
    State(api): Shared,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    req.require_post_as_get()?;
    let (order, authzs) = owned_order(&api, &id, req.account()).await?;
    if order.processing_since.is_some() {
        // Did the client come back after finalize? (compatibility report)
        if let Err(e) = api.store.observe_poll(&id, now_ms()).await {
            tracing::warn!(order_id = %id, error = %e, "recording a poll failed");
        }
    }
    Ok(order_reply(&api, &order, &authzs).into_response())
}

/// A valid authorization the account holds for `identifier`, validated
/// within `[api] authz_reuse`, copied into `order` as valid with the
/// challenge that validated it (same type, token and time), so the CAA
/// recheck at finalize still goes by that validation's age. One that would
/// expire within the hour is not worth handing out.
async fn reused_authz(
    api: &crate::Api,
    order: &Order,
    identifier: &Identifier,
    now: i64,
) -> Result<Option<(Authz, Vec<Challenge>)>, ApiError> {
    let window = api.config.authz_reuse.as_millis() as i64;
    if window == 0 {
        return Ok(None);
    }
    let found = api
        .store
        .reusable_authz(
            &order.account_id,
            identifier.authz_name(),
            identifier.is_wildcard(),
            now + 3_600_000,
            now - window,
        )
        .await?;
    let Some((valid, challenge)) = found else {
        return Ok(None);
    };
    tracing::info!(
        order_id = order.id,
        reused_authz = valid.id,
        identifier = identifier.value,
        "reusing a valid authorization"
    );
    let authz = Authz {
        id: random_id(16),
        order_id: order.id.clone(),
        ..valid
    };
    let challenge = Challenge {
        id: random_id(16),
        authz_id: authz.id.clone(),
        ..challenge
    };
    Ok(Some((authz, vec![challenge])))
}
