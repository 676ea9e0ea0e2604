//! How long finalize waits for the pipeline: the mode (`async`, `sync`,
//! `hybrid`), a brownout schedule of UTC windows that switch it, and
//! overrides by account and by User-Agent. The pipeline is the same in
//! every mode; only the api's wait differs.
//!
//! The schedule is a TOML file, reloadable without a restart:
//!
//! ```toml
//! environment = "staging"        # whose windows apply to this deployment
//! mode = "sync"                  # outside every window
//! sync_timeout_secs = 30
//! hybrid_budget_min_ms = 100     # hybrid waits ~ the pipeline's recent p95,
//! hybrid_budget_max_ms = 3000    # clamped to these
//!
//! [[windows]]                    # "24 hours async in staging on 15 March"
//! environment = "staging"
//! start = "2023-03-15T00:00:00Z"
//! end = "2023-03-16T00:00:00Z"
//! mode = "async"
//!
//! [[accounts]]                   # overrides win over windows
//! id = "Xa1…"
//! mode = "sync"
//!
//! [[user_agents]]                # `*` matches any run of characters
//! pattern = "OldClient/1.*"
//! mode = "sync"
//! ```

use serde::Deserialize;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalizeMode {
    /// Answer `processing` at once.
    Async,
    /// Wait for the pipeline, up to `sync_timeout`; then answer the order as
    /// it stands.
    Sync,
    /// Wait up to a budget near the pipeline's recent p95, then answer
    /// `processing` if it is not done.
    Hybrid,
}

impl FinalizeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalizeMode::Async => "async",
            FinalizeMode::Sync => "sync",
            FinalizeMode::Hybrid => "hybrid",
        }
    }
}

impl std::str::FromStr for FinalizeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "async" => Ok(FinalizeMode::Async),
            "sync" => Ok(FinalizeMode::Sync),
            "hybrid" => Ok(FinalizeMode::Hybrid),
            other => Err(format!(
                "unknown finalize mode {other:?}; use async, sync or hybrid"
            )),
        }
    }
}

/// One UTC window of the brownout schedule: `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub environment: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub mode: FinalizeMode,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FinalizePolicy {
    pub environment: String,
    pub mode: FinalizeMode,
    pub sync_timeout: Duration,
    pub hybrid_budget_min: Duration,
    pub hybrid_budget_max: Duration,
    pub windows: Vec<Window>,
    pub accounts: Vec<(String, FinalizeMode)>,
    pub user_agents: Vec<(String, FinalizeMode)>,
}

impl FinalizePolicy {
    /// A fixed mode with no schedule.
    pub fn fixed(mode: FinalizeMode) -> Self {
        FinalizePolicy {
            environment: "default".into(),
            mode,
            sync_timeout: Duration::from_secs(30),
            hybrid_budget_min: Duration::from_millis(100),
            hybrid_budget_max: Duration::from_millis(default_budget_max()),
            windows: Vec::new(),
            accounts: Vec::new(),
            user_agents: Vec::new(),
        }
    }

    /// The mode for one finalize: an account override, else a User-Agent
    /// override, else the window of this environment containing `now`,
    /// else the default.
    pub fn mode_for(
        &self,
        now: OffsetDateTime,
        account_id: &str,
        user_agent: &str,
    ) -> FinalizeMode {
        if let Some((_, mode)) = self.accounts.iter().find(|(id, _)| id == account_id) {
            return *mode;
        }
        if let Some((_, mode)) = self
            .user_agents
            .iter()
            .find(|(p, _)| glob_match(p, user_agent))
        {
            return *mode;
        }
        self.windows
            .iter()
            .find(|w| w.environment == self.environment && w.start <= now && now < w.end)
            .map_or(self.mode, |w| w.mode)
    }

    /// Parses a schedule file (see the module docs).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: ScheduleFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let time = |s: &str, what: &str| {
            OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|e| format!("{what} {s:?}: {e} (use RFC 3339, e.g. 2023-03-15T00:00:00Z)"))
        };
        // `hybrid_budget` clamps between the two, which needs min ≤ max.
        if file.hybrid_budget_min_ms > file.hybrid_budget_max_ms {
            return Err(format!(
                "hybrid_budget_min_ms ({}) is above hybrid_budget_max_ms ({})",
                file.hybrid_budget_min_ms, file.hybrid_budget_max_ms
            ));
        }
        let mut windows = Vec::new();
        for w in file.windows {
            let (start, end) = (time(&w.start, "window start")?, time(&w.end, "window end")?);
            if end <= start {
                return Err(format!(
                    "window {} – {} ends before it starts",
                    w.start, w.end
                ));
            }
            windows.push(Window {
                environment: w.environment.unwrap_or_else(|| file.environment.clone()),
                start,
                end,
                mode: w.mode,
            });
        }
        Ok(FinalizePolicy {
            environment: file.environment,
            mode: file.mode,
            sync_timeout: Duration::from_secs(file.sync_timeout_secs),
            hybrid_budget_min: Duration::from_millis(file.hybrid_budget_min_ms),
            hybrid_budget_max: Duration::from_millis(file.hybrid_budget_max_ms),
            windows,
            accounts: file.accounts.into_iter().map(|a| (a.id, a.mode)).collect(),
            user_agents: file
                .user_agents
                .into_iter()
                .map(|u| (u.pattern, u.mode))
                .collect(),
        })
    }

    /// Reads a schedule file; the error names the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Self::from_toml(&text))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The hybrid mode's wait: the pipeline's recent p95 (when known),
    /// clamped to the configured bounds.
    /// A policy built by hand with min above max (a parsed one cannot be)
    /// waits the max: `min`/`max` rather than `clamp`, which would panic
    /// in the finalize request.
    pub fn hybrid_budget(&self, recent_p95: Option<Duration>) -> Duration {
        recent_p95
            .unwrap_or(self.hybrid_budget_max)
            .max(self.hybrid_budget_min)
            .min(self.hybrid_budget_max)
    }
}

/// Re-reads the schedule file on every SIGHUP and swaps it in; requests
/// in flight keep the policy they started with. A bad file keeps the old
/// policy and says why in the log.
pub fn reload_on_sighup(path: std::path::PathBuf, policy: crate::PolicyHandle) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match FinalizePolicy::from_file(&path) {
                Ok(new) => {
                    tracing::info!(path = %path.display(), "finalize schedule reloaded");
                    policy.replace(new);
                }
                Err(e) => {
                    tracing::error!(error = %e, "schedule reload failed; keeping the old one")
                }
            }
        }
    });
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    #[serde(default = "default_environment")]
    environment: String,
    #[serde(default = "default_mode")]
    mode: FinalizeMode,
    #[serde(default = "default_sync_timeout")]
    sync_timeout_secs: u64,
    #[serde(default = "default_budget_min")]
    hybrid_budget_min_ms: u64,
    #[serde(default = "default_budget_max")]
    hybrid_budget_max_ms: u64,
    #[serde(default)]
    windows: Vec<WindowFile>,
    #[serde(default)]
    accounts: Vec<AccountOverride>,
    #[serde(default)]
    user_agents: Vec<UserAgentOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFile {
    #[serde(default)]
    environment: Option<String>,
    start: String,
    end: String,
    mode: FinalizeMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountOverride {
    id: String,
    mode: FinalizeMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserAgentOverride {
    pattern: String,
    mode: FinalizeMode,
}

fn default_environment() -> String {
    "default".into()
}
fn default_mode() -> FinalizeMode {
    FinalizeMode::Async
}
fn default_sync_timeout() -> u64 {
    30
}
fn default_budget_min() -> u64 {
    100
}
/// Below the request timeouts of common clients, so hybrid never makes a
/// client time out.
fn default_budget_max() -> u64 {
    3000
}

/// `*` matches any run of characters; everything else literally.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SCHEDULE: &str = r#"
environment = "staging"
mode = "sync"

[[windows]]
start = "2023-03-15T00:00:00Z"
end = "2023-03-16T00:00:00Z"
mode = "async"

[[windows]]
environment = "prod"
start = "2023-04-05T17:07:00Z"
end = "2023-04-06T01:00:00Z"
mode = "async"

[[windows]]
start = "2023-03-17T00:00:00Z"
end = "2023-03-20T00:00:00Z"
mode = "hybrid"

[[accounts]]
id = "pinned"
mode = "sync"

[[user_agents]]
pattern = "OldClient/1.*"
mode = "sync"
"#;

    #[test]
    fn window_edges_are_start_inclusive_end_exclusive() {
        let p = FinalizePolicy::from_toml(SCHEDULE).unwrap();
        let at = |t| p.mode_for(t, "acct", "instant-acme/0.8");
        assert_eq!(
            at(datetime!(2023-03-14 23:59:59.999 UTC)),
            FinalizeMode::Sync
        );
        assert_eq!(at(datetime!(2023-03-15 00:00:00 UTC)), FinalizeMode::Async);
        assert_eq!(
            at(datetime!(2023-03-15 23:59:59.999 UTC)),
            FinalizeMode::Async
        );
        assert_eq!(at(datetime!(2023-03-16 00:00:00 UTC)), FinalizeMode::Sync);
        assert_eq!(at(datetime!(2023-03-18 12:00:00 UTC)), FinalizeMode::Hybrid);
        // Another environment's window does not apply here.
        assert_eq!(at(datetime!(2023-04-05 18:00:00 UTC)), FinalizeMode::Sync);
    }

    #[test]
    fn overrides_win_over_windows() {
        let p = FinalizePolicy::from_toml(SCHEDULE).unwrap();
        let inside = datetime!(2023-03-15 12:00:00 UTC);
        assert_eq!(
            p.mode_for(inside, "pinned", "instant-acme/0.8"),
            FinalizeMode::Sync
        );
        assert_eq!(
            p.mode_for(inside, "acct", "OldClient/1.2 (linux)"),
            FinalizeMode::Sync
        );
        assert_eq!(
            p.mode_for(inside, "acct", "OldClient/2.0"),
            FinalizeMode::Async
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        for (text, fragment) in [
            ("mode = \"fast\"", "fast"),
            (
                "[[windows]]\nstart = \"yesterday\"\nend = \"2023-03-16T00:00:00Z\"\nmode = \"async\"",
                "yesterday",
            ),
            (
                "[[windows]]\nstart = \"2023-03-16T00:00:00Z\"\nend = \"2023-03-15T00:00:00Z\"\nmode = \"async\"",
                "ends before",
            ),
            ("enviroment = \"x\"", "enviroment"),
            (
                "hybrid_budget_min_ms = 500\nhybrid_budget_max_ms = 100",
                "hybrid_budget_min_ms (500) is above hybrid_budget_max_ms (100)",
            ),
            // The other bound's default: max 3000 below min 5000.
            (
                "mode = \"hybrid\"\nhybrid_budget_min_ms = 5000",
                "hybrid_budget_min_ms (5000) is above hybrid_budget_max_ms (3000)",
            ),
        ] {
            let err = FinalizePolicy::from_toml(text).unwrap_err();
            assert!(err.contains(fragment), "{err}");
        }
    }

    #[test]
    fn hybrid_budget_follows_p95_within_bounds() {
        let p = FinalizePolicy::fixed(FinalizeMode::Hybrid);
        assert_eq!(
            p.hybrid_budget(Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            p.hybrid_budget(Some(Duration::from_millis(1))),
            Duration::from_millis(100)
        );
        assert_eq!(
            p.hybrid_budget(Some(Duration::from_secs(60))),
            Duration::from_secs(3)
        );
        assert_eq!(p.hybrid_budget(None), Duration::from_secs(3));
        // Equal bounds are allowed; inverted ones built by hand do not panic.
        let equal = "hybrid_budget_min_ms = 700\nhybrid_budget_max_ms = 700";
        let p = FinalizePolicy::from_toml(equal).unwrap();
        assert_eq!(p.hybrid_budget(None), Duration::from_millis(700));
        let inverted = FinalizePolicy {
            hybrid_budget_min: Duration::from_secs(5),
            ..FinalizePolicy::fixed(FinalizeMode::Hybrid)
        };
        assert_eq!(
            inverted.hybrid_budget(Some(Duration::from_secs(4))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("certbot/*", "certbot/2.1"));
        assert!(glob_match("*acme*", "instant-acme/0.8"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c-y-b"));
        assert!(!glob_match("certbot", "certbot/2"));
        assert!(glob_match("*", ""));
    }
}
