//! Kiln distributed for the tests: every binary as its own process
//! (`deploy/local/cluster.sh up`) on this machine's RabbitMQ and PostgreSQL.
//!
//! Each [`Cluster`] is isolated: its own PostgreSQL database (dropped at the
//! end), queue prefix (the topology is deleted at the end), data directory,
//! http-01 responder and ports. `cluster.sh down` always runs (a `Drop`
//! guard); on failure, or with `KILN_DIST_KEEP_LOGS=1`, the data directory
//! with every process's log is kept and its path printed.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (or `AMQP_URL`), `rabbitmqctl` (root)
//! and PostgreSQL on 127.0.0.1:5432 with trust auth.

use crate::{Http01Responder, free_port};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use store::Store;

/// The worker binaries; cluster.sh starts each `replicas` times.
pub const WORKERS: [&str; 4] = ["validator", "caa-checker", "signer", "ct-submitter"];
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
/// The database the harness connects to for CREATE / DROP DATABASE.
const POSTGRES_ADMIN_DB: &str = "test";

/// Numbers the clusters of this process (database and queue names).
static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);
/// The binaries are built once per test process.
static BUILT: OnceLock<Result<(), String>> = OnceLock::new();

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// Where `cargo build` (debug) put binary `name`; cluster.sh runs the same.
pub fn binary(name: &str) -> PathBuf {
    workspace_root().join("target/debug").join(name)
}

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Builds every binary cluster.sh starts, once per test process; panics if
/// the build fails.
pub async fn ensure_binaries_built() {
    tokio::task::spawn_blocking(|| BUILT.get_or_init(build_binaries).clone())
        .await
        .expect("build task")
        .expect("the Kiln binaries build");
}

/// `cargo test` holds the build lock only while building, so this works
/// from inside a test (and is a no-op when the binaries are fresh).
fn build_binaries() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args(["build", "-q"]);
    for package in [
        "kiln",
        "api",
        "validator",
        "caa-checker",
        "signer",
        "ct-submitter",
        "fake-ct-log",
        "fake-dns",
    ] {
        command.args(["-p", package]);
    }
    let out = command
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Waits until the broker accepts an AMQP connection (another test binary
/// may be restarting it); panics after `within`.
pub async fn wait_for_broker(within: Duration) {
    let until = Instant::now() + within;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()),
        )
        .await;
        match attempt {
            Ok(Ok(connection)) => {
                let _ = connection.close(200, "probe".into()).await;
                return;
            }
            Ok(Err(e)) if Instant::now() > until => {
                panic!("RabbitMQ is not reachable at {}: {e}", amqp_url())
            }
            Err(_) if Instant::now() > until => {
                panic!("RabbitMQ at {} does not answer", amqp_url())
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A base for `count` consecutive admin ports, all free now and none of
/// `avoid`, from 20000 up to the kernel's ephemeral range
/// (`ip_local_port_range`, 32768 by default): a port in that range may be
/// taken by any outgoing connection between this check and the process
/// binding it (an api once started without its admin endpoints so).
fn free_admin_base(count: u16, avoid: &[u16]) -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    // Should the ephemeral range start low, 20000–60000 as before.
    let span = match ephemeral_low.checked_sub(20_000 + count) {
        Some(span) if span >= 1_000 => span,
        _ => 40_000,
    };
    for attempt in 0u64..200 {
        let random = RandomState::new().hash_one((std::process::id(), attempt));
        let base = 20_000 + (random % u64::from(span)) as u16;
        let ports = base..base + count;
        if ports.clone().any(|p| avoid.contains(&p)) {
            continue;
        }
        let all_free = ports
            .clone()
            .all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free run of {count} admin ports found");
}

/// One distributed Kiln, stopped and cleaned up when dropped.
pub struct Cluster {
    /// Prefixes the harness's log lines (and names the data directory).
    pub label: String,
    pub directory_url: String,
    /// The api's plain-HTTP listener (issuer, CRLs): every leaf's AIA and
    /// CRL DP are under it.
    pub public_base_url: String,
    pub root_pem_path: PathBuf,
    pub root_pem: String,
    /// What the validator replicas ask for http-01 answers.
    pub http01: Http01Responder,
    pub db_url: String,
    /// The cluster's database, for the checks.
    pub store: Store,
    replicas: usize,
    data_dir: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    db_name: String,
    prefix: String,
    /// Remote perspective validators (`KILN_PERSPECTIVES`), remote-1….
    perspectives: usize,
    /// `down` ran already (the test stopped the cluster itself).
    stopped: bool,
}

impl Cluster {
    /// Builds the binaries (once), creates a database and starts the api
    /// and `replicas` of each worker with `cluster.sh up`; `extra_env` goes
    /// to every binary. Returns once every worker replica consumes.
    pub async fn start(label: &str, replicas: usize, extra_env: &[(&str, &str)]) -> Cluster {
        ensure_binaries_built().await;

        let n = NEXT_CLUSTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let db_name = format!("kiln_cluster_{pid}_{n}");
        let admin = Store::connect(&format!("{POSTGRES}/{POSTGRES_ADMIN_DB}"))
            .await
            .expect("PostgreSQL must be running on 127.0.0.1:5432 with trust auth");
        // A leftover of an earlier process with the same pid.
        admin
            .execute_admin(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .await
            .expect("drop stale database");
        admin
            .execute_admin(&format!("CREATE DATABASE {db_name}"))
            .await
            .expect("create the test database");
        admin.close().await;
        let db_url = format!("{POSTGRES}/{db_name}");
        let store = Store::connect(&db_url).await.expect("connect to test db");

        let data_dir = tempfile::Builder::new()
            .prefix(&format!("kiln-cluster-{label}-"))
            .tempdir()
            .expect("temp dir");
        let data = data_dir.path().to_path_buf();
        let http01 = Http01Responder::start().await;
        let listen_port = free_port();
        let tlsalpn_port = free_port();
        let public_port = free_port();
        let perspectives: usize = extra_env
            .iter()
            .find(|(k, _)| *k == "KILN_PERSPECTIVES")
            .map_or(0, |(_, v)| v.parse().expect("KILN_PERSPECTIVES"));
        let admin_base = free_admin_base(
            (1 + WORKERS.len() * replicas + perspectives) as u16,
            &[listen_port, tlsalpn_port, http01.port, public_port],
        );
        let public_http = format!("127.0.0.1:{public_port}");
        let listen = format!("127.0.0.1:{listen_port}");
        let prefix = format!("kiln_cluster.{pid}.{n}.");
        let mut env: Vec<(String, String)> = [
            ("KILN_REPLICAS", replicas.to_string()),
            ("KILN_DATA_DIR", data.display().to_string()),
            ("KILN_LISTEN", listen.clone()),
            ("KILN_PUBLIC_HTTP_LISTEN", public_http.clone()),
            ("KILN_HTTP01_PORT", http01.port.to_string()),
            ("KILN_TLSALPN01_PORT", tlsalpn_port.to_string()),
            ("DATABASE_URL", db_url.clone()),
            ("AMQP_URL", amqp_url()),
            ("KILN_QUEUE_PREFIX", prefix.clone()),
            ("KILN_ADMIN_PORT_BASE", admin_base.to_string()),
            ("KILN_NO_BUILD", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );

        // The guard exists before `up`, so a failed start is cleaned up too.
        let mut cluster = Cluster {
            label: label.to_string(),
            directory_url: format!("https://{listen}/directory"),
            public_base_url: format!("http://{public_http}"),
            root_pem_path: data.join("root.pem"),
            root_pem: String::new(),
            http01,
            db_url,
            store,
            replicas,
            data_dir: Some(data_dir),
            env,
            db_name,
            prefix,
            perspectives,
            stopped: false,
        };
        let started = Instant::now();
        for attempt in 1..=3 {
            wait_for_broker(Duration::from_secs(90)).await;
            let out = cluster.cluster_sh("up").await;
            if out.status.success() {
                break;
            }
            let why = format!(
                "cluster.sh up failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(attempt < 3, "{why}");
            // Most likely the broker was being restarted by another test.
            eprintln!("[{label}] {why}\nretrying");
            let _ = cluster.cluster_sh("down").await;
        }
        cluster.root_pem =
            std::fs::read_to_string(&cluster.root_pem_path).expect("cluster.sh wrote root.pem");
        // `up` returns once the api answers; the workers may still subscribe.
        let consumers = cluster.await_all_consuming(Duration::from_secs(30)).await;
        assert!(
            consumers.values().all(|n| *n as usize == replicas),
            "[{label}] every worker replica consumes: {consumers:?}"
        );
        println!(
            "[{label}] cluster up in {:.1}s: {replicas} replicas per worker, api {listen}, db {}, queue prefix {}",
            started.elapsed().as_secs_f64(),
            cluster.db_name,
            cluster.prefix
        );
        cluster
    }

    /// The data directory: CA, configs, `logs/`, `pids/`, `admin-ports`.
    pub fn data(&self) -> &Path {
        self.data_dir.as_ref().expect("data dir").path()
    }

    fn cluster_sh_command(&self, action: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(workspace_root().join("deploy/local/cluster.sh"))
            .arg(action)
            .current_dir(self.data());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    async fn cluster_sh(&self, action: &str) -> std::process::Output {
        let mut command = self.cluster_sh_command(action);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("cluster.sh task")
            .expect("run cluster.sh")
    }

    /// `cluster.sh down`: SIGTERM to every process (each drains and flushes
    /// its spans); the database and queues stay until the value is dropped.
    pub async fn down(&mut self) {
        let out = self.cluster_sh("down").await;
        assert!(out.status.success(), "cluster.sh down: {out:?}");
        self.stopped = true;
    }

    /// `name admin-address` of every process, as cluster.sh wrote them.
    pub fn admin_ports(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.data().join("admin-ports"))
            .expect("admin-ports")
            .lines()
            .filter_map(|line| {
                let (name, addr) = line.split_once(' ')?;
                Some((name.to_string(), addr.to_string()))
            })
            .collect()
    }

    /// The pid of process `name` (`api`, `signer-1`, `ct-log-0`…).
    pub fn pid_of(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.data().join(format!("pids/{name}.pid")))
            .unwrap_or_else(|e| panic!("pid of {name}: {e}"))
            .trim()
            .parse()
            .expect("pid")
    }

    /// SIGKILLs one process of the cluster; `down` then skips it.
    pub fn kill_nine(&self, name: &str) {
        let pid = self.pid_of(name);
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -9 {name} ({pid}): {status}");
        // Its pid may be reused later: `down` must not signal it.
        let _ = std::fs::remove_file(self.data().join(format!("pids/{name}.pid")));
    }

    /// Starts `name` again after [`Cluster::kill_nine`], as a supervisor
    /// would and as cluster.sh started it: the same binary, config file,
    /// admin port and environment, its output appended to its log, its pid
    /// recorded for `down`. Works for `api` and the workers (`signer-2`…).
    pub fn restart(&self, name: &str) {
        let program = match name.rsplit_once('-') {
            _ if name == "api" => "api",
            Some((worker, n)) if WORKERS.contains(&worker) && n.parse::<u32>().is_ok() => worker,
            _ => panic!("restart: {name} is neither the api nor a worker replica"),
        };
        let admin = self
            .admin_ports()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} has no admin port"))
            .1;
        let pid_file = self.data().join(format!("pids/{name}.pid"));
        assert!(!pid_file.exists(), "{name} is still running");
        // Through bash, as cluster.sh does: the process outlives the
        // command and is reaped by init, not left a zombie of the test.
        let script = r#"setsid "$1" --config "$2" >>"$3" 2>&1 </dev/null & echo $! >"$4""#;
        let mut command = Command::new("bash");
        command
            .args(["-c", script, "restart"])
            .arg(binary(program))
            .arg(self.config_path(program))
            .arg(self.data().join(format!("logs/{name}.log")))
            .arg(&pid_file)
            .current_dir(self.data())
            .env("KILN_ADMIN__LISTEN", &admin)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let status = command.status().expect("run bash");
        assert!(status.success(), "restarting {name}: {status}");
    }

    /// Waits (at most `within`) until the api serves its directory again.
    pub async fn await_api_serving(&self, within: Duration) {
        let root = reqwest::Certificate::from_pem(self.root_pem.as_bytes()).expect("root pem");
        let http = reqwest::Client::builder()
            .add_root_certificate(root)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let until = Instant::now() + within;
        loop {
            let answer = http.get(&self.directory_url).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < until,
                "[{}] the api does not serve its directory {within:?} on",
                self.label
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The queue and exchange prefix of this cluster (`kiln.dead` is
    /// `{prefix}kiln.dead`).
    pub fn queue_prefix(&self) -> &str {
        &self.prefix
    }

    /// The config file cluster.sh wrote for `binary` (`api`, `signer`…).
    pub fn config_path(&self, binary: &str) -> PathBuf {
        self.data().join(format!("config/{binary}.toml"))
    }

    /// Fake CT log `i` (0, 1 or 2): its URL and its key file. Its process
    /// is `ct-log-{i}` for [`Cluster::kill_nine`].
    pub fn ct_log(&self, i: usize) -> (String, PathBuf) {
        let out = std::fs::read_to_string(self.data().join(format!("ct/log-{i}.out")))
            .unwrap_or_else(|e| panic!("CT log {i}'s output: {e}"));
        let url = out
            .lines()
            .find(|l| l.starts_with("http"))
            .unwrap_or_else(|| panic!("CT log {i} printed no URL: {out}"))
            .to_string();
        (url, self.data().join(format!("ct/log-{i}.pem")))
    }

    /// Lines containing `needle` over every process's log.
    pub fn log_lines_containing(&self, needle: &str) -> usize {
        let Ok(entries) = std::fs::read_dir(self.data().join("logs")) else {
            return 0;
        };
        entries
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count()
            })
            .sum()
    }

    /// Consumers RabbitMQ sees on each of this cluster's stage queues.
    fn stage_consumers(&self) -> BTreeMap<String, u32> {
        let retry_steps = queue::AmqpOptions::default().retry_steps;
        let topology = queue::amqp::Topology::new(&self.prefix, &retry_steps).expect("topology");
        let out = Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "name",
                "consumers",
                "--no-table-headers",
                "-q",
            ])
            .output()
            .expect("rabbitmqctl list_queues");
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        let consumers: HashMap<&str, u32> = listed
            .lines()
            .filter_map(|line| {
                let (name, n) = line.split_once('\t')?;
                Some((name, n.trim().parse().ok()?))
            })
            .collect();
        topology
            .stage_queues
            .iter()
            .map(|q| (q.clone(), consumers.get(q.as_str()).copied().unwrap_or(0)))
            .collect()
    }

    /// Waits (at most `within`) until every stage queue has a consumer per
    /// replica; returns what RabbitMQ shows last.
    pub async fn await_all_consuming(&self, within: Duration) -> BTreeMap<String, u32> {
        let until = Instant::now() + within;
        loop {
            let consumers = self.stage_consumers();
            let all = consumers.values().all(|n| *n as usize == self.replicas);
            if all || Instant::now() > until {
                return consumers;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Whether the api process still answers on its admin port.
    pub async fn api_alive(&self) -> bool {
        let Some((_, addr)) = self.admin_ports().into_iter().find(|(n, _)| n == "api") else {
            return false;
        };
        let probe = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        probe.is_ok_and(|r| r.status().is_success())
    }

    async fn drop_database_and_topology(
        db_name: String,
        prefix: String,
        perspectives: usize,
    ) -> Result<(), String> {
        let admin = Store::connect(&format!("{POSTGRES}/{POSTGRES_ADMIN_DB}"))
            .await
            .map_err(|e| e.to_string())?;
        admin
            .execute_admin(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .await
            .map_err(|e| format!("dropping {db_name}: {e}"))?;
        admin.close().await;

        let retry_steps = queue::AmqpOptions::default().retry_steps;
        let remote_queues: Vec<String> = (1..=perspectives)
            .map(|i| proto::queues::perspective(&format!("remote-{i}")))
            .collect();
        let topology = queue::amqp::Topology::new(&prefix, &retry_steps)
            .and_then(|t| t.with_stage_queues(&remote_queues))
            .map_err(|e| e.to_string())?;
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .map_err(|e| e.to_string())?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        for queue in topology.all_queues() {
            channel
                .queue_delete(queue.into(), Default::default())
                .await
                .map_err(|e| format!("deleting queue {queue}: {e}"))?;
        }
        for exchange in topology.all_exchanges() {
            channel
                .exchange_delete(exchange.into(), Default::default())
                .await
                .map_err(|e| format!("deleting exchange {exchange}: {e}"))?;
        }
        let _ = connection.close(200, "cleaned up".into()).await;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if !self.stopped {
            match self.cluster_sh_command("down").output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "[{}] cluster.sh down: {}\n{}",
                    self.label,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("[{}] cluster.sh down: {e}", self.label),
            }
        }
        let keep = failed || std::env::var_os("KILN_DIST_KEEP_LOGS").is_some();
        if keep && let Some(dir) = self.data_dir.take() {
            let kept = dir.keep();
            eprintln!(
                "[{}] {}logs of every process kept in {}/logs",
                self.label,
                if failed { "FAILED: " } else { "" },
                kept.display()
            );
        }
        // Drop cannot await: clean up on a runtime of its own, on its own
        // thread (a test that stops the broker restarts it before this).
        let (db_name, prefix) = (self.db_name.clone(), self.prefix.clone());
        let perspectives = self.perspectives;
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(60),
                    Cluster::drop_database_and_topology(db_name, prefix, perspectives),
                )
                .await
                .map_err(|_| "timed out".to_string())?
            })
        })
        .join();
        match cleaned {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("[{}] cleanup: {e}", self.label),
            Err(_) => eprintln!("[{}] cleanup panicked", self.label),
        }
    }
}
