//! `kiln dead-letters list | replay`: the jobs a distributed deployment's
//! stages gave up on, in RabbitMQ's `kiln.dead`, with why; and putting
//! chosen ones back into their stage queues once the cause is fixed (a
//! DNS outage over, a log back). Listing takes nothing from the queue.

use anyhow::Context;
use clap::{Args, Subcommand};
use proto::Job;
use queue::amqp::{AmqpOptions, AmqpQueue, DeadLetter};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DeadLettersCommand {
    /// The dead letters, oldest first: job, attempt, stage queue, reason.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Publish dead letters back to their stage queues as first attempts.
    Replay {
        /// Only the jobs of this order (or challenge) id; may begin with `-`.
        #[arg(long, allow_hyphen_values = true, required_unless_present = "all")]
        subject: Option<String>,
        /// Every decodable dead letter.
        #[arg(long, conflicts_with = "subject")]
        all: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// The deployment's broker (`amqp://user:pass@host:5672/vhost`).
    #[arg(long, env = "AMQP_URL", required_unless_present = "amqp_url_file")]
    amqp_url: Option<String>,
    /// Read the URL (it carries a password) from this file instead.
    #[arg(long, env = "AMQP_URL_FILE", conflicts_with = "amqp_url")]
    amqp_url_file: Option<PathBuf>,
    /// The deployment's queue-name prefix ("" in production).
    #[arg(long, default_value = "")]
    prefix: String,
}

impl BrokerArgs {
    async fn connect(&self) -> anyhow::Result<AmqpQueue> {
        let url = match (&self.amqp_url, &self.amqp_url_file) {
            (Some(url), _) => url.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?
                .trim()
                .to_string(),
            (None, None) => anyhow::bail!("--amqp-url or --amqp-url-file is required"),
        };
        let options = AmqpOptions {
            prefix: self.prefix.clone(),
            connection_name: "kiln dead-letters".into(),
            ..AmqpOptions::default()
        };
        AmqpQueue::connect(&url, options)
            .await
            .context("connecting to RabbitMQ")
    }
}

pub async fn run(command: DeadLettersCommand) -> anyhow::Result<()> {
    let (queue, outcome) = match &command {
        DeadLettersCommand::List {
            limit,
            json,
            broker,
        } => {
            let queue = broker.connect().await?;
            let outcome = list(&queue, *limit, *json).await;
            (queue, outcome)
        }
        DeadLettersCommand::Replay {
            subject,
            all,
            broker,
        } => {
            let queue = broker.connect().await?;
            let outcome = replay(&queue, subject.as_deref(), *all).await;
            (queue, outcome)
        }
    };
    queue.close().await;
    outcome
}

async fn list(queue: &AmqpQueue, limit: usize, as_json: bool) -> anyhow::Result<()> {
    let letters = queue.dead_letters(limit).await?;
    if as_json {
        let docs: Vec<_> = letters.iter().map(letter_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "dead_letters": docs }))?
        );
        return Ok(());
    }
    println!(
        "{:<22} {:<24} {:>7}  {:<20} {:<14} reason",
        "job", "subject", "attempt", "queue", "given up by"
    );
    for letter in &letters {
        let (job, subject) = match &letter.job {
            Ok(job) => (job_name(job), job.subject_id().to_string()),
            Err(_) => ("(undecodable)".to_string(), "-".to_string()),
        };
        let stage = letter.stage.as_deref().unwrap_or("-");
        println!(
            "{job:<22} {subject:<24} {:>7}  {:<20} {stage:<14} {}",
            letter.attempt, letter.queue, letter.reason
        );
    }
    println!("{} dead letter(s) shown (limit {limit})", letters.len());
    Ok(())
}

async fn replay(queue: &AmqpQueue, subject: Option<&str>, all: bool) -> anyhow::Result<()> {
    let outcome = queue
        .replay_dead_letters(|letter| {
            all || letter
                .job
                .as_ref()
                .is_ok_and(|job| Some(job.subject_id()) == subject)
        })
        .await?;
    println!(
        "replayed {}; {} left in kiln.dead",
        outcome.replayed, outcome.kept
    );
    Ok(())
}

fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    match &letter.job {
        Ok(job) => json!({
            "job": job_name(job),
            "subject": job.subject_id(),
            "attempt": letter.attempt,
            "queue": letter.queue,
            "given_up_by": letter.stage,
            "reason": letter.reason,
            "traceparent": letter.headers.get("traceparent"),
        }),
        Err(error) => json!({
            "job": null,
            "error": error,
            "queue": letter.queue,
            "given_up_by": letter.stage,
            "reason": letter.reason,
        }),
    }
}

/// The job's variant, as the logs name it (`CheckCaa`, `SignPrecert`, …).
fn job_name(job: &Job) -> String {
    let debug = format!("{job:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}
