//! Running the client under test: the command with its placeholders
//! filled in, in its own process group (so a hung client and whatever it
//! started are killed at the time limit), its output kept in files.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The values the client command's placeholders stand for.
#[derive(Clone, Debug)]
pub struct Placeholders {
    pub directory: String,
    pub root: PathBuf,
    pub domain: String,
    pub http01_port: u16,
    pub tlsalpn01_port: u16,
    pub email: String,
    pub workdir: PathBuf,
}

impl Placeholders {
    /// `arg` with every placeholder replaced.
    pub fn fill(&self, arg: &str) -> String {
        arg.replace("{directory}", &self.directory)
            .replace("{root}", &self.root.display().to_string())
            .replace("{domain}", &self.domain)
            .replace("{http01_port}", &self.http01_port.to_string())
            .replace("{tlsalpn01_port}", &self.tlsalpn01_port.to_string())
            .replace("{email}", &self.email)
            .replace("{workdir}", &self.workdir.display().to_string())
    }
}

/// How the client's run ended.
#[derive(Clone, Debug)]
pub struct ClientRun {
    /// `None` when it was killed (time limit) or died of a signal.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub ended_ms: i64,
    pub took: Duration,
    /// stdout then stderr, as written.
    pub output: String,
    /// Text in the output that names the scenario, not an error: its
    /// directory and domain.
    pub masks: Vec<String>,
}

impl ClientRun {
    /// The client's last line that looks like an error, else its last line.
    pub fn last_error_line(&self) -> Option<String> {
        let masks: Vec<&str> = self.masks.iter().map(String::as_str).collect();
        last_error_line(&self.output, &masks)
    }
}

const ERROR_WORDS: &[&str] = &[
    "error",
    "fail",
    "problem",
    "invalid",
    "denied",
    "refused",
    "timeout",
    "timed out",
    "unable",
    "could not",
    "cannot",
    "urn:ietf:params:acme",
];

/// The last line naming an error (else the last non-blank line), trimmed
/// and at most 240 characters; a line ending in `:` takes the next one
/// with it. Words inside `masks` (the scenario's paths and domain, which
/// name the scenario) do not count.
pub fn last_error_line(output: &str, masks: &[&str]) -> Option<String> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let is_error = |line: &str| {
        let mut lower = line.to_ascii_lowercase();
        for mask in masks.iter().filter(|m| !m.is_empty()) {
            lower = lower.replace(&mask.to_ascii_lowercase(), " ");
        }
        ERROR_WORDS.iter().any(|w| lower.contains(w))
    };
    let at = (0..lines.len())
        .rev()
        .find(|i| is_error(lines[*i]))
        .or(lines.len().checked_sub(1))?;
    let mut line = lines[at].to_string();
    if line.ends_with(':')
        && let Some(next) = lines.get(at + 1)
    {
        line = format!("{line} {next}");
    }
    Some(line.chars().take(240).collect())
}

/// Runs `command` (placeholders filled) in `placeholders.workdir` within
/// `limit`; its stdout and stderr go to `out_dir`. The client runs in its
/// own process group, so a Ctrl-C at the terminal does not reach it: the
/// caller's handler drops this future, which kills the group.
pub async fn run(
    command: &[String],
    placeholders: &Placeholders,
    limit: Duration,
    out_dir: &Path,
) -> anyhow::Result<ClientRun> {
    let args: Vec<String> = command.iter().map(|a| placeholders.fill(a)).collect();
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no client command"))?;
    let (stdout, stderr) = (out_dir.join("stdout.txt"), out_dir.join("stderr.txt"));
    let mut child = tokio::process::Command::new(program);
    child
        .args(rest)
        .current_dir(&placeholders.workdir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(&stderr)?)
        // Kiln is on loopback: never through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = child
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting the client {program:?}: {e}"))?;
    // Whatever the client left running (a standalone http-01 server, a
    // hook's child) goes with it: when it ends, and on every other way out
    // of here — this future dropped on Ctrl-C or on a failed restart.
    // (`kill_on_drop` alone would kill only the client itself.)
    let mut group = Group(child.id());
    let waited = tokio::time::timeout(limit, child.wait()).await;
    let (took, ended_ms) = (started.elapsed(), store::now_ms());
    group.kill();
    let (exit_code, timed_out) = match waited {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            let _ = child.kill().await;
            (None, true)
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    Ok(ClientRun {
        exit_code,
        timed_out,
        ended_ms,
        took,
        output: format!("{}{}", read(&stdout), read(&stderr)),
        masks: vec![
            out_dir.display().to_string(),
            placeholders.workdir.display().to_string(),
            placeholders.domain.clone(),
        ],
    })
}

/// The client's process group (its pid: it leads it), killed when this
/// is dropped.
struct Group(Option<u32>);

impl Group {
    /// Kills the group with `kill(1)`, since this crate links no libc
    /// wrapper; once (its id could be reused after).
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A short name for the client: the program run, past any `env VAR=…`.
pub fn client_name(command: &[String]) -> String {
    let mut words = command.iter().map(String::as_str);
    let mut program = words.next().unwrap_or("");
    if Path::new(program).file_name().is_some_and(|n| n == "env") {
        program = words
            .find(|w| !w.contains('=') && !w.starts_with('-'))
            .unwrap_or(program);
    }
    Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_everywhere_in_an_argument() {
        let p = Placeholders {
            directory: "https://127.0.0.1:1/directory".into(),
            root: "/r/root.pem".into(),
            domain: "a.test".into(),
            http01_port: 5002,
            tlsalpn01_port: 5001,
            email: "x@kiln.test".into(),
            workdir: "/w".into(),
        };
        assert_eq!(p.fill("--http.port=:{http01_port}"), "--http.port=:5002");
        assert_eq!(
            p.fill("{directory} {root} {domain} {tlsalpn01_port} {email} {workdir}/x"),
            "https://127.0.0.1:1/directory /r/root.pem a.test 5001 x@kiln.test /w/x"
        );
        assert_eq!(p.fill("{unknown}"), "{unknown}");
    }

    #[test]
    fn the_last_error_line_is_found() {
        let out = "Requesting a certificate for order-invalid.test\nAn unexpected error occurred:\n\
                   CAA forbids it\nSee /w/order-invalid/logs for details\n\n";
        assert_eq!(
            last_error_line(out, &["/w/order-invalid", "order-invalid.test"]).as_deref(),
            Some("An unexpected error occurred: CAA forbids it")
        );
        assert_eq!(last_error_line("done\n", &[]).as_deref(), Some("done"));
        assert_eq!(last_error_line("\n \n", &[]), None);
    }

    #[test]
    fn the_client_is_named_by_its_program() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(client_name(&words("/usr/bin/lego --server x run")), "lego");
        assert_eq!(
            client_name(&words("env REQUESTS_CA_BUNDLE=/r certbot certonly")),
            "certbot"
        );
    }

    #[tokio::test]
    async fn a_client_over_its_time_limit_is_killed() {
        let dir = std::env::temp_dir().join(format!("kiln-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = Placeholders {
            directory: String::new(),
            root: dir.clone(),
            domain: "d.test".into(),
            http01_port: 1,
            tlsalpn01_port: 2,
            email: String::new(),
            workdir: dir.clone(),
        };
        let sh = |script: &str| vec!["sh".to_string(), "-c".into(), script.into()];
        let quick = run(
            &sh("echo {domain}; echo 'error: no' >&2; exit 3"),
            &p,
            Duration::from_secs(10),
            &dir,
        )
        .await
        .unwrap();
        assert_eq!((quick.exit_code, quick.timed_out), (Some(3), false));
        assert!(quick.output.contains("d.test"), "{}", quick.output);
        assert_eq!(quick.last_error_line().as_deref(), Some("error: no"));
        let hung = run(
            &sh("sleep 30 & echo $! > bg.pid; sleep 30"),
            &p,
            Duration::from_millis(500),
            &dir,
        )
        .await
        .unwrap();
        assert!(hung.timed_out && hung.exit_code.is_none());
        assert!(hung.took < Duration::from_secs(5));
        // What the client started went with it (gone, or a zombie).
        let pid = std::fs::read_to_string(dir.join("bg.pid")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        assert!(
            stat.as_deref().map_or(true, |s| s.contains(") Z")),
            "{stat:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A run abandoned half way (Ctrl-C, a failed restart) takes the whole
    /// process group with it, not only the client.
    #[tokio::test]
    async fn a_dropped_run_kills_what_the_client_started() {
        let dir = std::env::temp_dir().join(format!("kiln-client-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = Placeholders {
            directory: String::new(),
            root: dir.clone(),
            domain: "d.test".into(),
            http01_port: 1,
            tlsalpn01_port: 2,
            email: String::new(),
            workdir: dir.clone(),
        };
        let command = [
            "sh",
            "-c",
            "sleep 60 & echo $! > bg.pid; echo $$ > sh.pid; wait",
        ]
        .map(String::from);
        let pid_of = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let running = run(&command, &p, Duration::from_secs(60), &dir);
        let abandoned = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::pin!(running);
            loop {
                tokio::select! {
                    _ = &mut running => panic!("the client ended on its own"),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                if pid_of("bg.pid").is_some() && pid_of("sh.pid").is_some() {
                    break;
                }
            }
            // `running` is dropped here, the client still running.
        });
        abandoned.await.expect("the client started");
        for name in ["bg.pid", "sh.pid"] {
            let pid = pid_of(name).unwrap();
            let gone = (0..50).any(|_| {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
                let dead = stat.as_deref().map_or(true, |s| s.contains(") Z"));
                if !dead {
                    std::thread::sleep(Duration::from_millis(20));
                }
                dead
            });
            assert!(gone, "{name} ({}) outlived the abandoned run", pid.trim());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
