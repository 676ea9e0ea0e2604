//! A run: accounts, names and CSRs made before the clock starts, the
//! warm-up, then every planned issuance through C workers, timed from the
//! first start to the last finish.

use crate::args::{Args, Challenge};
use crate::issue::{Ctx, Failure, Plan, PollPolicy, Sample, issue};
use crate::report::Report;
use crate::responder::Responder;
use crate::transport::Transport;
use anyhow::Context;
use instant_acme::{Account, ChallengeType, NewAccount};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub async fn run(args: Args) -> anyhow::Result<Report> {
    let root = match &args.root {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let transport = Transport::new(root.as_deref(), args.concurrency.max(8))?;
    let responder = match args.challenge {
        Challenge::Http01 => Responder::http01(args.http01_listen).await?,
        Challenge::Dns01 => Responder::dns01(args.challtestsrv.as_deref().unwrap_or_default()),
    };
    let poll = match args.poll_interval {
        Some(ms) => PollPolicy::Fixed(Duration::from_millis(ms)),
        None => PollPolicy::RetryAfter {
            fallback: Duration::from_millis(args.default_poll_ms),
        },
    };
    let ctx = Arc::new(Ctx {
        transport: transport.clone(),
        responder,
        challenge: match args.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::Dns01 => ChallengeType::Dns01,
        },
        poll,
        order_timeout: Duration::from_secs(args.order_timeout_s),
    });

    // Before the clock: accounts, names and CSRs.
    let run_id = format!(
        "r{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros()
            % 0xffff_ffff
    );
    let account_count = args.accounts.unwrap_or(args.concurrency).max(1);
    let setup_start = Instant::now();
    let accounts = create_accounts(&transport, &args.directory, account_count).await?;
    let plan = |prefix: &str, count: usize| -> anyhow::Result<Vec<Plan>> {
        (0..count)
            .map(|i| {
                Plan::new(
                    (0..args.names_per_order)
                        .map(|j| format!("{run_id}-{prefix}{i}-{j}.{}", args.domain))
                        .collect(),
                )
            })
            .collect()
    };
    let warm = plan("w", args.warmup)?;
    let plans = plan("o", args.orders)?;
    let setup = setup_start.elapsed();

    if !warm.is_empty() {
        let (_, warm_results) =
            drive(&ctx, &accounts, warm, args.concurrency, args.run_timeout_s).await;
        let failed = warm_results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            eprintln!("kiln-bench: warm-up: {failed} issuances failed");
        }
    }

    let (times, results) =
        drive(&ctx, &accounts, plans, args.concurrency, args.run_timeout_s).await;
    Ok(Report::new(
        &args,
        poll,
        account_count,
        setup,
        times,
        &results,
    ))
}

/// `count` accounts at `directory`, created concurrently.
async fn create_accounts(
    transport: &Transport,
    directory: &str,
    count: usize,
) -> anyhow::Result<Vec<Arc<Account>>> {
    use futures::StreamExt;
    let mut creating = futures::stream::FuturesOrdered::new();
    for _ in 0..count {
        let t = transport.clone();
        let dir = directory.to_string();
        creating.push_back(async move {
            Account::builder_with_http(Box::new(t))
                .create(
                    &NewAccount {
                        contact: &[],
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    dir,
                    None,
                )
                .await
        });
    }
    let mut accounts = Vec::with_capacity(count);
    while let Some(created) = creating.next().await {
        let (account, _) = created.context("creating an account")?;
        accounts.push(Arc::new(account));
    }
    Ok(accounts)
}

/// How long a timed run took: from the first start to the last finish, and
/// to the last successful issuance (the rate while a server was issuing,
/// when it stalls part-way — Pebble 2.4's deadlock).
#[derive(Clone, Copy)]
pub struct RunTimes {
    pub wall: Duration,
    pub until_last_issued: Duration,
}

/// Runs `plans` through `concurrency` workers; returns its times and each
/// result.
async fn drive(
    ctx: &Arc<Ctx>,
    accounts: &[Arc<Account>],
    plans: Vec<Plan>,
    concurrency: usize,
    run_timeout_s: u64,
) -> (RunTimes, Vec<Result<Sample, Failure>>) {
    let plans = Arc::new(plans);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(plans.len())));
    let last_issued = Arc::new(Mutex::new(Duration::ZERO));
    let deadline = Instant::now() + Duration::from_secs(run_timeout_s);
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency.min(plans.len().max(1)) {
        let (ctx, plans, next, results, last_issued) = (
            ctx.clone(),
            plans.clone(),
            next.clone(),
            results.clone(),
            last_issued.clone(),
        );
        let accounts: Vec<Arc<Account>> = accounts.to_vec();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plans.len() || Instant::now() >= deadline {
                    break;
                }
                let account = &accounts[(w + i) % accounts.len()];
                let outcome = match tokio::time::timeout(
                    ctx.order_timeout + Duration::from_secs(10),
                    issue(&ctx, account, &plans[i]),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Failure::new("order", "stalled")),
                };
                if outcome.is_ok() {
                    let mut last = last_issued.lock().expect("lock");
                    *last = (*last).max(start.elapsed());
                }
                results.lock().expect("lock").push(outcome);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let times = RunTimes {
        wall: start.elapsed(),
        until_last_issued: *last_issued.lock().expect("lock"),
    };
    let results = std::mem::take(&mut *results.lock().expect("lock"));
    (times, results)
}
