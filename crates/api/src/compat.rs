//! Client compatibility with asynchronous finalization: for every finalize
//! answered `processing`, did the client come back to poll, and did it
//! download its certificate? This is the data Let's Encrypt gathered in its
//! brownouts, as a report an operator can read (`kiln report compat`) and a
//! page on the admin port.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use store::FinalizeObservation;

/// The client's product and version: the first `product/version` token of
/// its User-Agent (RFC 9110 §10.1.5), e.g. `CertbotACMEClient/2.9.0 (…)`.
pub fn client_of(user_agent: &str) -> (String, String) {
    let first = user_agent.split_whitespace().next().unwrap_or("");
    let (product, version) = first.split_once('/').unwrap_or((first, ""));
    let product = if product.is_empty() {
        "unknown"
    } else {
        product
    };
    (product.to_string(), version.to_string())
}

/// One client family's counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FamilyReport {
    pub family: String,
    pub versions: Vec<String>,
    /// Finalizes answered `processing`.
    pub finalized: u64,
    /// Of those, the client polled the order afterwards.
    pub polled: u64,
    /// … and downloaded the certificate.
    pub downloaded: u64,
    /// No poll within the abandon window: the client gave up (or broke).
    pub abandoned: u64,
    /// Too recent to tell.
    pub undecided: u64,
    /// Median time from finalize to first poll, of those that polled.
    pub median_first_poll_ms: Option<i64>,
}

/// Aggregates observations per client family. An observation without a
/// poll counts as abandoned once `abandon_after_ms` has passed since its
/// finalize (as of `now`), else as undecided.
pub fn report(
    observations: &[FinalizeObservation],
    now: i64,
    abandon_after_ms: i64,
) -> Vec<FamilyReport> {
    let mut families: BTreeMap<String, (FamilyReport, Vec<i64>)> = BTreeMap::new();
    for o in observations {
        let (entry, first_polls) = families.entry(o.client_product.clone()).or_default();
        entry.family = o.client_product.clone();
        if !o.client_version.is_empty() && !entry.versions.contains(&o.client_version) {
            entry.versions.push(o.client_version.clone());
        }
        entry.finalized += 1;
        match o.first_poll_at {
            Some(at) => {
                entry.polled += 1;
                first_polls.push(at - o.finalized_at);
            }
            None if now - o.finalized_at >= abandon_after_ms => entry.abandoned += 1,
            None => entry.undecided += 1,
        }
        if o.downloaded_at.is_some() {
            entry.downloaded += 1;
        }
    }
    families
        .into_values()
        .map(|(mut entry, mut first_polls)| {
            first_polls.sort_unstable();
            entry.median_first_poll_ms = first_polls.get(first_polls.len() / 2).copied();
            entry.versions.sort();
            entry
        })
        .collect()
}

/// A plain-text table for terminals.
pub fn render_table(rows: &[FamilyReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>7} {:>10} {:>9} {:>9} {:>14}",
        "client", "finalized", "polled", "downloaded", "abandoned", "undecided", "first poll p50"
    );
    for r in rows {
        let p50 = r
            .median_first_poll_ms
            .map_or("-".to_string(), |ms| format!("{ms} ms"));
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>7} {:>10} {:>9} {:>9} {:>14}",
            truncate(&r.family, 28),
            r.finalized,
            r.polled,
            r.downloaded,
            r.abandoned,
            r.undecided,
            p50
        );
    }
    if rows.is_empty() {
        out.push_str("(no finalize has been answered `processing` yet)\n");
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An HTML page with one bar chart per client family, per period (the
/// brownout windows, and "outside windows"), as inline SVG.
pub fn render_html(periods: &[(String, Vec<FamilyReport>)]) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Kiln: client compatibility</title>\
         <style>body{font-family:sans-serif;margin:2em}h2{margin-top:1.5em}.legend span{margin-right:1em}</style>\
         </head><body><h1>Asynchronous finalization: what clients did</h1>\
         <p class=\"legend\"><span style=\"color:#2b7\">&#9632; polled</span>\
         <span style=\"color:#27b\">&#9632; downloaded</span><span style=\"color:#c33\">&#9632; abandoned</span></p>",
    );
    for (period, rows) in periods {
        let _ = write!(html, "<h2>{}</h2>", escape(period));
        if rows.is_empty() {
            html.push_str("<p>No finalize answered <code>processing</code> in this period.</p>");
        }
        for r in rows {
            let max = r.finalized.max(1) as f64;
            let bar = |y: u32, n: u64, color: &str, label: &str| {
                let w = 300.0 * n as f64 / max;
                format!(
                    "<rect x=\"110\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"{color}\"/>\
                     <text x=\"0\" y=\"{}\">{label}</text><text x=\"{:.1}\" y=\"{}\">{n}</text>",
                    y + 12,
                    115.0 + w,
                    y + 12
                )
            };
            let _ = write!(
                html,
                "<h3>{} <small>({} finalized; versions {})</small></h3><svg width=\"460\" height=\"66\">{}{}{}</svg>",
                escape(&r.family),
                r.finalized,
                escape(&r.versions.join(", ")),
                bar(0, r.polled, "#2b7", "polled"),
                bar(22, r.downloaded, "#27b", "downloaded"),
                bar(44, r.abandoned, "#c33", "abandoned"),
            );
        }
    }
    html.push_str("</body></html>");
    html
}

/// The report per period: all time, then each brownout window of this
/// deployment's environment.
pub async fn report_by_period(
    store: &store::Store,
    policy: &crate::FinalizePolicy,
    abandon_after_ms: i64,
) -> Result<Vec<(String, Vec<FamilyReport>)>, store::StoreError> {
    let now = store::now_ms();
    let all = store.finalize_observations(0).await?;
    let mut periods = vec![(
        "All finalizes answered processing".to_string(),
        report(&all, now, abandon_after_ms),
    )];
    for w in policy
        .windows
        .iter()
        .filter(|w| w.environment == policy.environment)
    {
        let (start, end) = (unix_ms(w.start), unix_ms(w.end));
        let inside: Vec<FinalizeObservation> = all
            .iter()
            .filter(|o| start <= o.finalized_at && o.finalized_at < end)
            .cloned()
            .collect();
        let label = format!("{} window {} – {}", w.mode.as_str(), w.start, w.end);
        periods.push((label, report(&inside, now, abandon_after_ms)));
    }
    Ok(periods)
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

struct PageState {
    store: store::Store,
    policy: crate::PolicyHandle,
    abandon_after_ms: i64,
}

type Page = axum::extract::State<std::sync::Arc<PageState>>;

async fn periods(
    state: &PageState,
) -> Result<Vec<(String, Vec<FamilyReport>)>, axum::response::Response> {
    use axum::response::IntoResponse;
    report_by_period(&state.store, &state.policy.get(), state.abandon_after_ms)
        .await
        .map_err(|e| {
            // The admin port may be reachable by more people than the
            // database's operators: the error text stays in the log.
            tracing::error!(error = %e, "reading the compatibility report failed");
            let body = "the report could not be read; the log has the details";
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        })
}

async fn page_html(axum::extract::State(state): Page) -> axum::response::Response {
    use axum::response::IntoResponse;
    match periods(&state).await {
        Ok(p) => (
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render_html(&p),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn page_json(axum::extract::State(state): Page) -> axum::response::Response {
    use axum::response::IntoResponse;
    match periods(&state).await {
        Ok(p) => {
            let doc: Vec<serde_json::Value> = p
                .into_iter()
                .map(|(period, clients)| serde_json::json!({"period": period, "clients": clients}))
                .collect();
            axum::Json(doc).into_response()
        }
        Err(r) => r,
    }
}

/// `/compat` (HTML with a chart per client family) and `/compat.json`, for
/// the admin port.
pub fn admin_router(
    store: store::Store,
    policy: crate::PolicyHandle,
    abandon_after: std::time::Duration,
) -> axum::Router {
    let state = std::sync::Arc::new(PageState {
        store,
        policy,
        abandon_after_ms: abandon_after.as_millis() as i64,
    });
    axum::Router::new()
        .route("/compat", axum::routing::get(page_html))
        .route("/compat.json", axum::routing::get(page_json))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(
        product: &str,
        finalized_at: i64,
        first_poll: Option<i64>,
        downloaded: bool,
    ) -> FinalizeObservation {
        FinalizeObservation {
            order_id: format!("o{finalized_at}{product}"),
            account_id: "a".into(),
            user_agent: format!("{product}/1.0"),
            client_product: product.into(),
            client_version: "1.0".into(),
            mode: "async".into(),
            finalized_at,
            first_poll_at: first_poll,
            polls: first_poll.map_or(0, |_| 1),
            downloaded_at: downloaded.then_some(finalized_at + 10),
        }
    }

    #[test]
    fn user_agents_name_the_client() {
        assert_eq!(
            client_of("CertbotACMEClient/2.9.0 (certbot; linux)"),
            ("CertbotACMEClient".into(), "2.9.0".into())
        );
        assert_eq!(
            client_of("xenolf-acme/4.9.1 (release; linux; amd64)"),
            ("xenolf-acme".into(), "4.9.1".into())
        );
        assert_eq!(client_of("curl"), ("curl".into(), "".into()));
        assert_eq!(client_of(""), ("unknown".into(), "".into()));
    }

    #[test]
    fn report_counts_per_family() {
        let now = 1_000_000;
        let rows = report(
            &[
                obs("poller", 0, Some(300), true),
                obs("poller", 10, Some(110), true),
                obs("quitter", 0, None, false),
                obs("quitter", now - 5, None, false),
            ],
            now,
            60_000,
        );
        assert_eq!(rows.len(), 2);
        let poller = &rows[0];
        assert_eq!(
            (
                poller.finalized,
                poller.polled,
                poller.downloaded,
                poller.abandoned
            ),
            (2, 2, 2, 0)
        );
        assert_eq!(poller.median_first_poll_ms, Some(300));
        let quitter = &rows[1];
        assert_eq!(
            (
                quitter.finalized,
                quitter.polled,
                quitter.abandoned,
                quitter.undecided
            ),
            (2, 0, 1, 1)
        );
        let table = render_table(&rows);
        assert!(table.contains("poller") && table.contains("quitter"));
        let html = render_html(&[("all".into(), rows)]);
        assert!(html.contains("<svg") && html.contains("quitter"));
    }
}
