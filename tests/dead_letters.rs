//! `kiln dead-letters list | replay` against the machine's RabbitMQ
//! (`AMQP_URL`, default guest on 127.0.0.1:5672), on a topology of its own
//! behind a unique prefix, deleted at the end.

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use proto::Job;
use queue::amqp::{AmqpOptions, AmqpQueue};
use queue::{Message, Queue};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn kiln(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(kiln_tests::cluster::binary("kiln"))
        .args(args)
        .env("AMQP_URL", url())
        .output()
        .expect("kiln runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn caa(order_id: &str) -> Message {
    Message::new(Job::CheckCaa {
        order_id: order_id.into(),
    })
}

fn listed(prefix: &str) -> Vec<Value> {
    let (code, out, err) = kiln(&["dead-letters", "list", "--json", "--prefix", prefix]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    doc["dead_letters"].as_array().expect("a list").clone()
}

#[tokio::test]
async fn an_operator_lists_dead_letters_and_replays_one_order() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let prefix = format!("test.dead-cli.{}.{nanos}.", std::process::id());
    let options = AmqpOptions {
        prefix: prefix.clone(),
        publish_timeout: Duration::from_secs(10),
        ..AmqpOptions::default()
    };
    let queue = AmqpQueue::connect(&url(), options)
        .await
        .expect("RabbitMQ must be running");
    queue
        .publish_dead(caa("-o-replayed"), "attempts_exhausted: DNS timed out")
        .await
        .expect("confirmed");
    queue
        .publish_dead(caa("o-kept"), "permanent: no such order")
        .await
        .expect("confirmed");

    let letters = listed(&prefix);
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["job"], "CheckCaa");
    assert_eq!(letters[0]["subject"], "-o-replayed");
    assert_eq!(letters[0]["queue"], "kiln.caa-checker");
    assert_eq!(letters[0]["reason"], "attempts_exhausted: DNS timed out");
    let (code, table, _) = kiln(&["dead-letters", "list", "--prefix", &prefix]);
    assert_eq!(code, 0);
    assert!(table.contains("permanent: no such order"), "{table}");
    assert_eq!(listed(&prefix).len(), 2, "listing takes nothing");

    let (code, out, err) = kiln(&[
        "dead-letters",
        "replay",
        "--subject",
        "-o-replayed",
        "--prefix",
        &prefix,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 1; 1 left"), "{out}");
    let left = listed(&prefix);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["subject"], "o-kept");
    let (ready, _) = queue
        .queue_stats(proto::queues::CAA_CHECKER)
        .await
        .expect("stats");
    assert_eq!(ready, 1, "the replayed job waits in its stage queue");
    let (code, _, err) = kiln(&["dead-letters", "replay", "--prefix", &prefix]);
    assert_ne!(code, 0, "replay needs --subject or --all");
    assert!(err.contains("--subject") || err.contains("--all"), "{err}");

    queue.close().await;
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("cleanup connection");
    let channel = connection.create_channel().await.expect("channel");
    let topology = queue.topology();
    for name in topology.all_queues() {
        let _ = channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await;
    }
    for name in topology.all_exchanges() {
        let _ = channel
            .exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await;
    }
}
