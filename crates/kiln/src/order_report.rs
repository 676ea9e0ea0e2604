//! `kiln order show` and the management API's order page: one order told
//! for a person.

/// A person-readable account of one order: state, problem, the timeline of
/// its finalization and its certificates.
pub fn order_report(order: &store::Order, certificates: &[store::CertificateRecord]) -> String {
    use std::fmt::Write as _;
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| ms.to_string())
    };
    let mut out = String::new();
    let _ = writeln!(out, "order {}", order.id);
    let _ = writeln!(out, "  account:     {}", order.account_id);
    let names: Vec<&str> = order.identifiers.iter().map(|i| i.value.as_str()).collect();
    let _ = writeln!(out, "  identifiers: {}", names.join(", "));
    let step = order
        .step
        .map(|s| format!(" (step {s})"))
        .unwrap_or_default();
    let _ = writeln!(out, "  status:      {}{step}", order.status);
    if let Some(problem) = &order.error {
        let _ = writeln!(out, "  error:       {problem}");
    }
    // The finalize request's trace: every stage's spans are in it.
    if let Some(trace_id) = &order.timeline.trace_id {
        let _ = writeln!(out, "  trace id:    {trace_id}");
    }
    let _ = writeln!(out, "  timeline:");
    let t = &order.timeline;
    let since = order.processing_since;
    let events = [
        ("created", Some(order.created_at)),
        ("finalize (processing)", since),
        ("CAA checked", t.caa_checked_at),
        ("precertificate signed", t.precert_at),
        ("SCTs obtained", t.scts_at),
        (
            if order.status == domain::OrderStatus::Invalid {
                "invalid"
            } else {
                "valid"
            },
            t.completed_at,
        ),
    ];
    for (what, when) in events {
        if let Some(ms) = when {
            let offset = since
                .filter(|s| ms >= *s)
                .map(|s| format!("  (+{} ms)", ms - s))
                .unwrap_or_default();
            let _ = writeln!(out, "    {}  {what}{offset}", at(ms));
        }
    }
    for c in certificates {
        let revoked = c
            .revoked_at
            .map(|r| format!(", revoked {}", at(r)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  certificate: serial {} {:?}{revoked}",
            c.serial, c.state
        );
    }
    out
}
