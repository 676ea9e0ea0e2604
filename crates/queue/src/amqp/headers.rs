//! A job's AMQP properties: persistent, MessagePack, and `Message.headers`
//! (the W3C trace context and friends) as AMQP headers and back, leaving the
//! broker's own `x-` headers to the broker.

use crate::Message;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use std::collections::BTreeMap;
use tracing::warn;

const CONTENT_TYPE: &str = "application/msgpack";
const PERSISTENT: u8 = 2;

/// A job's properties: persistent, MessagePack, its headers.
pub(super) fn properties(message: &Message) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(CONTENT_TYPE.into())
        .with_headers(headers_to_amqp(&message.headers))
}

/// Trace context and friends travel as AMQP long-string headers.
fn headers_to_amqp(headers: &BTreeMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        if is_broker_header(key) {
            warn!(header = %key, "x- headers belong to the broker; dropped");
            continue;
        }
        match ShortString::try_new(key.as_str()) {
            Ok(key) => {
                table.insert(key, AMQPValue::LongString(value.as_str().into()));
            }
            Err(e) => warn!(header = %key, error = %e, "header name too long; dropped"),
        }
    }
    table
}

/// String headers back into `Message.headers`. The broker's own are
/// skipped: the runner copies an input's headers onto the jobs it emits, and
/// a copied `x-first-death-*` would make RabbitMQ misreport that job's death.
pub(super) fn headers_from_amqp(properties: &BasicProperties) -> BTreeMap<String, String> {
    let Some(table) = properties.headers() else {
        return BTreeMap::new();
    };
    table
        .inner()
        .iter()
        .filter(|(key, _)| !is_broker_header(key.as_str()))
        .filter_map(|(key, value)| {
            let value = match value {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok()?,
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                _ => return None,
            };
            Some((key.as_str().to_string(), value))
        })
        .collect()
}

/// `x-death`, `x-first-death-reason`, `x-delivery-count`, …
fn is_broker_header(name: &str) -> bool {
    name.starts_with("x-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_headers_round_trip_and_broker_headers_are_skipped() {
        let mut sent = BTreeMap::from([("x-mine".to_string(), "no".to_string())]);
        let headers = BTreeMap::from([
            ("traceparent".to_string(), "00-abc-def-01".to_string()),
            ("tracestate".to_string(), "k=v".to_string()),
        ]);
        sent.extend(headers.clone());
        let mut table = headers_to_amqp(&sent);
        assert!(!table.contains_key("x-mine"));
        table.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        table.insert(
            "x-first-death-reason".into(),
            AMQPValue::LongString("expired".into()),
        );
        table.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        table.insert("priority".into(), AMQPValue::LongLongInt(3));
        let properties = BasicProperties::default().with_headers(table);
        assert_eq!(headers_from_amqp(&properties), headers);
    }
}
