//! The one place where problems become RFC 7807 documents (invariant 7).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{Problem, ProblemKind};
use serde_json::{Value, json};

/// An error answer. Client mistakes carry their problem; internal failures
/// are logged here and shown only as `serverInternal`.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Problem,
    /// Overrides the problem kind's usual status (404, 405, 409, 415).
    pub status: Option<StatusCode>,
    /// e.g. the existing account's URL on a keyChange conflict.
    pub location: Option<String>,
    /// `Link` header values, e.g. a rate limit's `rel="help"` page.
    pub links: Vec<String>,
    /// `Retry-After` in seconds (a rate limit).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Problem::new(kind, detail).into()
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_link(mut self, url: &str, rel: &str) -> Self {
        self.links.push(format!("<{url}>;rel=\"{rel}\""));
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(ProblemKind::Malformed, format!("no such {what}"))
            .with_status(StatusCode::NOT_FOUND)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Problem::internal().into()
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        ApiError {
            problem,
            status: None,
            location: None,
            links: Vec::new(),
            retry_after_secs: None,
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

/// The JSON form of a problem, also used for `order.error`,
/// `challenge.error` and subproblems.
pub fn problem_json(p: &Problem) -> Value {
    let mut doc = json!({
        "type": format!("urn:ietf:params:acme:error:{}", p.kind.acme_name()),
        "detail": p.detail,
    });
    if let Some(id) = &p.identifier {
        doc["identifier"] = json!(id);
    }
    if !p.subproblems.is_empty() {
        doc["subproblems"] = p.subproblems.iter().map(problem_json).collect();
    }
    if p.kind == ProblemKind::BadSignatureAlgorithm {
        doc["algorithms"] = json!(crate::jws::SUPPORTED_ALGS);
    }
    doc
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.problem.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
        });
        let mut body = problem_json(&self.problem);
        body["status"] = json!(status.as_u16());
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        for link in self
            .links
            .iter()
            .filter_map(|l| HeaderValue::from_str(l).ok())
        {
            response.headers_mut().append(header::LINK, link);
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_500_shows_no_internal_text() {
        let secret = "connection to postgres://kiln@10.0.0.5/kiln failed: src/db.rs:42";
        let response = ApiError::internal(secret).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let store = ApiError::from(store::StoreError::Conflict(secret.into()));
        for error in [ApiError::internal(secret), store] {
            assert_eq!(error.problem.kind, ProblemKind::ServerInternal);
            let doc = problem_json(&error.problem).to_string();
            assert!(!doc.contains("postgres") && !doc.contains("db.rs"), "{doc}");
        }
    }
}
