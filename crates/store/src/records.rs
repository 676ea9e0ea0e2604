//! The rows Kiln stores, as plain structs.

use domain::{
    AuthzStatus, ChallengeStatus, ChallengeType, FinalizeStep, Identifier, OrderStatus, Problem,
};

#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub id: String,
    pub account_id: String,
    /// As stored: `ready` and an expiry's `invalid` are also derived on read
    /// (see `domain::order_status_on_read`).
    pub status: OrderStatus,
    pub step: Option<FinalizeStep>,
    pub identifiers: Vec<Identifier>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
    pub csr: Option<Vec<u8>>,
    pub processing_since: Option<i64>,
    pub step_deadline: Option<i64>,
    pub finalize_deadline: Option<i64>,
    pub error: Option<Problem>,
    pub certificate_serial: Option<String>,
    /// When each finalization step finished (unix ms): the order's timeline.
    pub timeline: Timeline,
}

/// When a finalizing order passed each step; derived from columns the
/// transitions set, so it costs no extra writes. With the trace id the
/// finalize request stored, to find the order's spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub caa_checked_at: Option<i64>,
    pub precert_at: Option<i64>,
    pub scts_at: Option<i64>,
    /// When it became `valid` or `invalid`.
    pub completed_at: Option<i64>,
    /// The W3C trace id of the finalization: its spans are this timeline in
    /// detail, across every stage (None with tracing off).
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Authz {
    pub id: String,
    pub order_id: String,
    pub account_id: String,
    /// The base name (without `*.`), as RFC 8555 §7.1.4 shows it.
    pub identifier: String,
    pub wildcard: bool,
    pub status: AuthzStatus,
    pub expires_at: i64,
    pub validated_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    pub id: String,
    pub authz_id: String,
    pub kind: ChallengeType,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated_at: Option<i64>,
    pub error: Option<Problem>,
}
