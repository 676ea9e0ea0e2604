//! The RabbitMQ back end against the machine's broker (`AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). These tests fail, never skip,
//! when the broker is down.
//!
//! Isolation: each test declares its own topology behind a unique name
//! prefix and deletes it when done (also on panic). `broker_restart_*`
//! stops and starts the RabbitMQ *application* (`rabbitmqctl stop_app` /
//! `start_app`, needs root): it takes the file's write lock so no other test
//! here runs meanwhile. Test binaries of other crates using RabbitMQ at the
//! same moment lose their connections for those seconds. The nack test sets
//! (and clears) a policy on its own queue, also through `rabbitmqctl`.

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use proto::Job;
use proto::queues::{CAA_CHECKER, DEAD, SIGNER, VALIDATOR};
use queue::amqp::Topology;
use queue::{
    AmqpOptions, AmqpQueue, Consumer, Delivery, Handler, MemoryDeadLetters, Message, Queue,
    QueueError, RunnerConfig, StageError, StageIo, run_stage,
};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{RwLock, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Readers: ordinary tests. Writer: the test that restarts the broker.
static BROKER: RwLock<()> = RwLock::const_new(());

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const WAIT: Duration = Duration::from_secs(10);

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A queue with its own topology, deleted when this is dropped.
struct TestQueue {
    queue: AmqpQueue,
    topology: Topology,
}

impl std::ops::Deref for TestQueue {
    type Target = AmqpQueue;
    fn deref(&self) -> &AmqpQueue {
        &self.queue
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        // Drop cannot await: delete on a runtime of its own, on its own thread.
        let topology = self.topology.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(delete_topology(&topology))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!(
                "could not delete test topology {:?}",
                self.topology.exchange
            );
        }
    }
}

async fn delete_topology(
    topology: &Topology,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (_connection, channel) = raw_channel().await;
    for queue in topology.all_queues() {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await?;
    }
    for exchange in topology.all_exchanges() {
        channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}

fn options(test: &str) -> AmqpOptions {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    AmqpOptions {
        prefix: format!("test.{test}.{}.{nanos}.", std::process::id()),
        retry_steps: vec![Duration::from_millis(250), Duration::from_secs(1)],
        publish_timeout: Duration::from_secs(10),
        connection_name: format!("queue-test-{test}"),
        ..AmqpOptions::default()
    }
}

async fn connect(options: AmqpOptions) -> TestQueue {
    let url = url();
    let queue = AmqpQueue::connect(&url, options).await.unwrap_or_else(|e| {
        // Credentials stay out of the test log.
        let at = url.rsplit('@').next().unwrap_or_default();
        panic!("RabbitMQ must be running at {at} (or set AMQP_URL): {e}")
    });
    let topology = queue.topology().clone();
    TestQueue { queue, topology }
}

async fn raw_channel() -> (Connection, Channel) {
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("raw connection to RabbitMQ");
    let channel = connection.create_channel().await.expect("raw channel");
    (connection, channel)
}

fn check_caa(order_id: &str) -> Message {
    let mut message = Message::new(Job::CheckCaa {
        order_id: order_id.into(),
    });
    message
        .headers
        .insert("traceparent".into(), TRACEPARENT.into());
    message
}

/// The next delivery, failing the test on an error or after `WAIT`.
async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    match tokio::time::timeout(WAIT, consumer.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        Ok(Some(Err(e))) => panic!("consume failed: {e}"),
        Ok(None) => panic!("consumer ended"),
        Err(_) => panic!("nothing delivered within {WAIT:?}"),
    }
}

/// Waits until `queue` holds `want` ready messages.
async fn wait_for_depth(queue: &AmqpQueue, name: &str, want: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let depth = queue.queue_depth(name).await.expect("queue depth");
        if depth == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: depth {depth}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn publish_then_consume_round_trips_job_and_headers() {
    let _shared = BROKER.read().await;
    let queue = connect(options("roundtrip")).await;
    assert!(queue.is_connected());
    queue.ready().await.expect("ready");

    let sent = check_caa("o-roundtrip");
    queue.publish(sent.clone()).await.expect("confirmed");
    wait_for_depth(&queue, CAA_CHECKER, 1).await;

    let mut consumer = queue.consume(CAA_CHECKER, 4).await.expect("consume");
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.message.as_ref().expect("decodes"), &sent);
    assert!(!delivery.redelivered);
    delivery.acker.ack().await.expect("ack");
    assert!(
        delivery.acker.ack().await.is_err(),
        "a second ack is refused"
    );
    wait_for_depth(&queue, CAA_CHECKER, 0).await;

    let unknown = queue.consume("kiln.no-such-stage", 1).await;
    assert!(unknown.is_err(), "consuming an unknown queue fails at once");
    assert!(queue.is_connected(), "a refused queue only costs a channel");
}

#[tokio::test]
async fn unroutable_publish_is_not_confirmed() {
    let _shared = BROKER.read().await;
    let queue = connect(options("unroutable")).await;
    let signer = queue.topology().name(SIGNER);
    let (_connection, channel) = raw_channel().await;
    channel
        .queue_unbind(
            signer.as_str().into(),
            queue.topology().exchange.as_str().into(),
            signer.as_str().into(),
            FieldTable::default(),
        )
        .await
        .expect("unbind");

    let started = Instant::now();
    let result = queue
        .publish(Message::new(Job::SignPrecert {
            order_id: "o-lost".into(),
        }))
        .await;
    assert!(
        matches!(result, Err(QueueError::NotConfirmed(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "not retried");
}

/// A policy on one queue, cleared on drop.
struct Policy(String);

impl Policy {
    fn set(queue: &str, definition: &str) -> Self {
        let pattern = format!("^{}$", queue.replace('.', "\\."));
        let args = [
            "set_policy",
            "--apply-to",
            "queues",
            queue,
            &pattern,
            definition,
        ];
        rabbitmqctl(&args);
        Policy(queue.to_string())
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["clear_policy", &self.0])
            .status();
    }
}

#[tokio::test]
async fn a_nacked_publish_is_retried_then_not_confirmed() {
    let _shared = BROKER.read().await;
    let mut options = options("nack");
    options.publish_timeout = Duration::from_secs(2);
    let queue = connect(options).await;
    // Full at zero messages; the stage queues overflow with reject-publish.
    let _full = Policy::set(&queue.topology().name(SIGNER), r#"{"max-length":0}"#);

    // A quorum queue applies a new policy a moment later, and admits the
    // message that crosses the limit: the broker nacks the ones after it.
    let started = Instant::now();
    let mut nacked = None;
    while nacked.is_none() && started.elapsed() < WAIT {
        let job = Job::SignPrecert {
            order_id: "o-full".into(),
        };
        let attempt = Instant::now();
        if let Err(e) = queue.publish(Message::new(job)).await {
            nacked = Some((e, attempt.elapsed()));
        }
    }
    let (error, after) = nacked.expect("the broker never nacked");
    assert!(matches!(error, QueueError::NotConfirmed(_)), "{error:?}");
    // A nack is retried (with jittered backoff from `reconnect_min`) until
    // the publish timeout is near, so the error comes after at least one
    // pause; how many depends on when the policy took effect.
    let first_pause = AmqpOptions::default().reconnect_min / 2;
    assert!(after >= first_pause, "retried first: {after:?}");
}

#[tokio::test]
async fn delayed_publish_comes_back_after_the_retry_step() {
    let _shared = BROKER.read().await;
    let queue = connect(options("delayed")).await;
    let mut consumer = queue.consume(CAA_CHECKER, 4).await.expect("consume");

    // 300 ms rounds up to the 1 s step.
    let sent = check_caa("o-delayed");
    let started = Instant::now();
    queue
        .publish_delayed(sent.clone(), Duration::from_millis(300))
        .await
        .expect("confirmed");
    let delivery = next(&mut consumer).await;
    let waited = started.elapsed();
    // The broker's own `x-death` header is not passed on as ours.
    assert_eq!(delivery.message.as_ref().expect("decodes"), &sent);
    delivery.acker.ack().await.expect("ack");
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "came back after {waited:?}"
    );

    // Longer than every step: the largest one.
    let started = Instant::now();
    queue
        .publish_delayed(check_caa("o-long"), Duration::from_secs(60))
        .await
        .expect("confirmed");
    next(&mut consumer).await.acker.ack().await.expect("ack");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn rejected_and_undecodable_messages_land_in_the_dead_queue() {
    let _shared = BROKER.read().await;
    let queue = connect(options("reject")).await;
    let mut consumer = queue.consume(VALIDATOR, 4).await.expect("consume");
    let mut dead = queue.consume(DEAD, 4).await.expect("consume dead");

    let sent = Message::new(Job::ValidateChallenge {
        challenge_id: "c-rejected".into(),
    });
    queue.publish(sent.clone()).await.expect("confirmed");
    next(&mut consumer)
        .await
        .acker
        .reject()
        .await
        .expect("reject");
    let buried = next(&mut dead).await;
    assert_eq!(buried.message.as_ref().expect("decodes"), &sent);
    buried.acker.ack().await.expect("ack");

    // Garbage published straight to the exchange decodes to an error.
    let (_connection, channel) = raw_channel().await;
    let validator = queue.topology().name(VALIDATOR);
    channel
        .basic_publish(
            queue.topology().exchange.as_str().into(),
            validator.as_str().into(),
            BasicPublishOptions::default(),
            b"\xc1 not msgpack",
            BasicProperties::default(),
        )
        .await
        .expect("raw publish");
    let garbage = next(&mut consumer).await;
    assert!(garbage.message.is_err());
    garbage.acker.reject().await.expect("reject");
    assert!(next(&mut dead).await.message.is_err());
}

/// A job its stage gave up on is published to `kiln.dead` with the reason.
#[tokio::test]
async fn a_job_given_up_on_is_published_to_the_dead_queue_with_why() {
    let _shared = BROKER.read().await;
    let queue = connect(options("given-up")).await;
    let mut dead = queue.consume(DEAD, 4).await.expect("consume dead");
    let sent = check_caa("o-given-up");
    queue
        .publish_dead(sent.clone(), "permanent: order o-given-up does not exist")
        .await
        .expect("confirmed");
    let buried = next(&mut dead).await;
    let message = buried.message.as_ref().expect("decodes");
    assert_eq!(message.envelope, sent.envelope);
    assert_eq!(
        message
            .headers
            .get(queue::DEAD_REASON_HEADER)
            .map(String::as_str),
        Some("permanent: order o-given-up does not exist")
    );
    buried.acker.ack().await.expect("ack");
}

#[tokio::test]
async fn a_message_requeued_past_the_delivery_limit_is_dead_lettered() {
    let _shared = BROKER.read().await;
    let mut options = options("limit");
    options.delivery_limit = 2;
    let queue = connect(options).await;
    queue
        .publish(check_caa("o-poison"))
        .await
        .expect("confirmed");

    // A raw consumer that always nacks with requeue, like a crashing worker.
    let (_connection, channel) = raw_channel().await;
    let mut raw = channel
        .basic_consume(
            queue.topology().name(CAA_CHECKER).as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("raw consume");
    let mut deliveries = 0;
    while let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_secs(2), raw.next()).await {
        let delivery = delivery.expect("delivery");
        deliveries += 1;
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        delivery.acker.nack(requeue).await.expect("nack");
    }
    // Returned more often than the limit: the first delivery plus `limit` more.
    assert_eq!(deliveries, 3);
    wait_for_depth(&queue, DEAD, 1).await;
    wait_for_depth(&queue, CAA_CHECKER, 0).await;
}

/// Fails its first attempt, then sends the order on to the signer.
#[derive(Default)]
struct FailsOnce {
    attempts: Mutex<Vec<u32>>,
}

#[async_trait]
impl Handler for FailsOnce {
    fn stage(&self) -> &'static str {
        "caa-checker"
    }

    async fn handle(&self, job: &Job, attempt: u32) -> Result<Vec<Job>, StageError> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(attempt);
        if attempt == 1 {
            return Err(StageError::Retry {
                after: Some(Duration::from_millis(100)),
                reason: "dns timeout".into(),
            });
        }
        Ok(vec![Job::SignPrecert {
            order_id: job.subject_id().to_string(),
        }])
    }

    async fn give_up(&self, _job: &Job, reason: &str) {
        panic!("gave up: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_runner_retries_and_hands_on_over_amqp() {
    let _shared = BROKER.read().await;
    let queue = connect(options("runner")).await;
    let handler = Arc::new(FailsOnce::default());
    let shutdown = CancellationToken::new();
    let config = RunnerConfig {
        concurrency: 2,
        ..RunnerConfig::default()
    };
    let runner = tokio::spawn({
        let (queue, handler, shutdown) = (queue.queue.clone(), handler.clone(), shutdown.clone());
        let io = StageIo {
            queue: Arc::new(queue),
            dead_letters: Arc::new(MemoryDeadLetters::default()),
        };
        async move { run_stage(io, CAA_CHECKER, handler, config, shutdown).await }
    });

    queue
        .publish(check_caa("o-runner"))
        .await
        .expect("confirmed");
    let mut signer = queue.consume(SIGNER, 1).await.expect("consume");
    let delivery = next(&mut signer).await;
    let handed_on = delivery.message.as_ref().expect("decodes");
    assert_eq!(
        handed_on.envelope.job,
        Job::SignPrecert {
            order_id: "o-runner".into()
        }
    );
    assert_eq!(handed_on.envelope.attempt, 1);
    assert_eq!(handed_on.headers["traceparent"], TRACEPARENT);
    delivery.acker.ack().await.expect("ack");

    shutdown.cancel();
    runner.await.expect("runner task").expect("runner");
    let attempts = handler
        .attempts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(attempts, vec![1, 2]);
    wait_for_depth(&queue, CAA_CHECKER, 0).await;
}

/// Runs `rabbitmqctl`, failing the test if it does.
fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("rabbitmqctl {args:?}: {e} (needs rabbitmqctl and root)"));
    assert!(status.success(), "rabbitmqctl {args:?}: {status}");
}

/// The stopped RabbitMQ application; started again on drop, even if the
/// test panics, so one failure does not leave the machine without a broker.
struct StoppedBroker {
    started: bool,
}

impl StoppedBroker {
    fn stop() -> Self {
        rabbitmqctl(&["stop_app"]);
        StoppedBroker { started: false }
    }

    fn start(mut self) {
        self.started = true;
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
    }
}

impl Drop for StoppedBroker {
    fn drop(&mut self) {
        if !self.started {
            let _ = Command::new("rabbitmqctl").arg("start_app").status();
        }
    }
}

/// Consumes in the background, acking every delivery and reporting order
/// ids, the whole time: through the outage too, where `next()` reports
/// errors and resubscribes. Ends when the queue is closed (`next()` → None).
fn keep_consuming(
    mut consumer: Box<dyn Consumer>,
) -> (mpsc::UnboundedReceiver<String>, JoinHandle<u32>) {
    let (seen, ids) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut errors = 0;
        while let Some(next) = consumer.next().await {
            let delivery = match next {
                Ok(delivery) => delivery,
                Err(e) => {
                    errors += 1;
                    eprintln!("consumer (expected during the outage): {e}");
                    continue;
                }
            };
            if let Ok(message) = &delivery.message {
                let _ = seen.send(message.envelope.job.subject_id().to_string());
            }
            // Can fail if the channel died after the delivery: the broker
            // redelivers it, and the test only looks for each id once.
            let _ = delivery.acker.ack().await;
        }
        errors
    });
    (ids, task)
}

/// Waits until every order in `want` was seen.
async fn wait_for_orders(
    ids: &mut mpsc::UnboundedReceiver<String>,
    want: &[&str],
    within: Duration,
) {
    let mut missing: Vec<&str> = want.to_vec();
    let deadline = Instant::now() + within;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ids.recv()).await {
            Ok(Some(id)) => missing.retain(|want| *want != id),
            Ok(None) => panic!("consumer ended while missing {missing:?}"),
            Err(_) => panic!("still missing {missing:?} after {within:?}"),
        }
    }
}

/// RESTARTS THE RABBITMQ APPLICATION on this machine (stop_app, 10 s, start_app).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_publishing_and_consuming_carry_on() {
    let _exclusive = BROKER.write().await;
    let mut options = options("restart");
    options.publish_timeout = Duration::from_secs(60);
    let queue = connect(options).await;
    let consumer = queue.consume(SIGNER, 4).await.expect("consume");
    let (mut ids, consuming) = keep_consuming(consumer);
    let sign = |id: &str| {
        Message::new(Job::SignPrecert {
            order_id: id.into(),
        })
    };

    queue.publish(sign("before")).await.expect("confirmed");
    wait_for_orders(&mut ids, &["before"], WAIT).await;

    let stopped = StoppedBroker::stop();
    let deadline = Instant::now() + WAIT;
    while queue.is_connected() {
        assert!(
            Instant::now() < deadline,
            "still connected to a stopped broker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queue.ready().await.is_err());
    // Published while the broker is down: waits for it, within publish_timeout.
    let during = tokio::spawn({
        let queue = queue.queue.clone();
        async move { queue.publish(sign("during")).await }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    stopped.start();

    during
        .await
        .expect("publish task")
        .expect("confirmed after restart");
    queue.publish(sign("after")).await.expect("confirmed");
    wait_for_orders(&mut ids, &["during", "after"], Duration::from_secs(60)).await;
    assert!(queue.is_connected());
    queue.ready().await.expect("ready");

    // The consumer noticed the outage, yet only closing the queue ends it.
    queue.close().await;
    let errors = tokio::time::timeout(WAIT, consuming)
        .await
        .expect("consumer ends once the queue is closed")
        .expect("consumer task");
    assert!(errors > 0, "the outage went unnoticed");
}

/// `kiln dead-letters`: listing leaves every letter in place; a replay puts
/// the chosen ones back into their stage queues as first attempts and
/// leaves the rest (and the undecodable) dead.
#[tokio::test]
async fn dead_letters_are_listed_in_place_and_replayed_by_choice() {
    let _shared = BROKER.read().await;
    let queue = connect(options("dead-letters")).await;
    let mut exhausted = check_caa("o-exhausted");
    exhausted.envelope.attempt = 7;
    // Given up by a stage other than its kind's (it reached the wrong queue).
    queue
        .publish_dead(
            exhausted.given_up_by("validator"),
            "attempts_exhausted: DNS timed out",
        )
        .await
        .expect("confirmed");
    queue
        .publish_dead(check_caa("o-kept"), "permanent: no such order")
        .await
        .expect("confirmed");
    let (_connection, channel) = raw_channel().await;
    channel
        .basic_publish(
            queue.topology().dead_letter_exchange.as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            b"\xc1 not msgpack",
            BasicProperties::default(),
        )
        .await
        .expect("raw publish");
    wait_for_depth(&queue, DEAD, 3).await;

    for _ in 0..2 {
        let letters = queue.dead_letters(10).await.expect("listed");
        assert_eq!(letters.len(), 3, "{letters:?}");
        let first = &letters[0];
        assert_eq!(
            first.job.as_ref().expect("decodes"),
            &Job::CheckCaa {
                order_id: "o-exhausted".into()
            }
        );
        assert_eq!(first.reason, "attempts_exhausted: DNS timed out");
        assert_eq!(first.attempt, 7);
        assert_eq!(first.queue, CAA_CHECKER);
        assert_eq!(first.stage.as_deref(), Some("validator"));
        assert_eq!(
            first.headers.get("traceparent").map(String::as_str),
            Some(TRACEPARENT)
        );
        assert!(letters[2].job.is_err());
        assert_eq!(letters[2].reason, "unknown");
        assert_eq!(letters[2].stage, None, "the broker's own");
        // Listing took nothing.
        wait_for_depth(&queue, DEAD, 3).await;
    }
    assert_eq!(queue.dead_letters(1).await.expect("listed").len(), 1);

    let mut caa = queue.consume(CAA_CHECKER, 4).await.expect("consume");
    let replayed = queue
        .replay_dead_letters(|letter| {
            letter.job
                == Ok(Job::CheckCaa {
                    order_id: "o-exhausted".into(),
                })
        })
        .await
        .expect("replayed");
    assert_eq!(
        replayed,
        queue::amqp::Replayed {
            replayed: 1,
            kept: 2
        }
    );
    let back = next(&mut caa).await;
    let message = back.message.as_ref().expect("decodes");
    assert_eq!(message.envelope.attempt, 1);
    assert!(!message.headers.contains_key(queue::DEAD_REASON_HEADER));
    assert!(!message.headers.contains_key(queue::DEAD_STAGE_HEADER));
    assert_eq!(
        message.headers.get("traceparent").map(String::as_str),
        Some(TRACEPARENT)
    );
    back.acker.ack().await.expect("ack");
    wait_for_depth(&queue, DEAD, 2).await;
    let left = queue.dead_letters(10).await.expect("listed");
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].reason, "permanent: no such order");
}
