//! The management API of the client-testing knobs (`kiln --mgmt-listen`):
//!
//! - `GET /knobs`: the knobs in force;
//! - `POST /knobs`: change some (JSON, the flags' syntax; absent fields stay);
//! - `DELETE /knobs` or `POST /reset`: back to the start-up knobs;
//! - `GET /orders/{id}`: an order's state and finalization timeline.

use crate::knobs::{KnobState, KnobsDoc};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Arc;
use store::Store;

#[derive(Clone)]
struct Mgmt {
    knobs: Arc<KnobState>,
    store: Store,
}

pub fn router(knobs: Arc<KnobState>, store: Store) -> axum::Router {
    axum::Router::new()
        .route("/knobs", get(show).post(change).delete(reset))
        .route("/reset", post(reset))
        .route("/orders/{id}", get(order))
        .with_state(Mgmt { knobs, store })
}

async fn show(State(m): State<Mgmt>) -> Json<KnobsDoc> {
    Json(m.knobs.get().to_doc())
}

async fn change(State(m): State<Mgmt>, Json(doc): Json<KnobsDoc>) -> Response {
    match m.knobs.get().apply(&doc) {
        Ok(knobs) => {
            tracing::info!(knobs = ?knobs.describe(), "knobs changed");
            m.knobs.set(knobs);
            Json(m.knobs.get().to_doc()).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

async fn reset(State(m): State<Mgmt>) -> Json<KnobsDoc> {
    m.knobs.reset();
    Json(m.knobs.get().to_doc())
}

async fn order(State(m): State<Mgmt>, Path(id): Path<String>) -> Response {
    match m.store.order(&id).await {
        Ok(Some(order)) => {
            let t = &order.timeline;
            Json(json!({
                "id": order.id,
                "status": order.status.as_str(),
                "step": order.step.map(|s| s.as_str()),
                "error": order.error,
                "timeline": {
                    "created": order.created_at,
                    "processing": order.processing_since,
                    "caa_checked": t.caa_checked_at,
                    "precertificate": t.precert_at,
                    "scts": t.scts_at,
                    "completed": t.completed_at,
                },
            }))
            .into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no order {id}") })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
