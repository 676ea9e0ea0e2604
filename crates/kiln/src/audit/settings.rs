//! What the audit checks against, from its flags and the stages' config
//! files: the database, the CT logs and policy, the leaf profile, and the
//! windows of time it allows.

use super::AuditArgs;
use anyhow::Context as _;
use ct_submitter::{CtLog, SubmitPolicy};
use signer::certificate::{OrderProfiles, Profile};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

pub struct Settings {
    pub since: i64,
    pub now: i64,
    pub page_size: i64,
    /// By log id; empty: check 7 cannot be made.
    pub logs: HashMap<[u8; 32], CtLog>,
    pub policy: SubmitPolicy,
    /// The fixed base of AIA and CRL URLs, if known.
    pub base_url: Option<String>,
    pub validity: Duration,
    pub order_profiles: OrderProfiles,
    /// The signer's CRL shards, if its config was given.
    pub crl_shards: Option<u32>,
    pub caa_window_ms: i64,
    pub deadline_grace_ms: i64,
    pub weak_keys: pkix::DebianWeakKeys,
}

impl Settings {
    pub fn from_args(args: &AuditArgs) -> anyhow::Result<Settings> {
        let mut logs: Vec<CtLog> = args.ct_logs.clone();
        let mut policy = SubmitPolicy::default();
        if let Some(path) = &args.ct_config {
            let (_, config) = service::config::load::<ct_submitter::config::CtSubmitterConfig>(
                Some(path),
                "ct-submitter",
            )
            .with_context(|| format!("reading {}", path.display()))?;
            logs.extend(config.logs()?);
            policy = config.policy();
        }
        if args.database_url.is_none() {
            logs.extend(fake_logs(&args.data_dir.join("ct-logs"))?);
        }
        let mut base_url = None;
        let mut validity = Profile::DEFAULT_VALIDITY;
        let mut order_profiles = OrderProfiles::default();
        let mut crl_shards = None;
        if let Some(path) = &args.signer_config {
            let (common, config) =
                service::config::load::<signer::config::SignerConfig>(Some(path), "signer")
                    .with_context(|| format!("reading {}", path.display()))?;
            let profile = config.profile(common.acme.public_base_url());
            base_url = Some(common.acme.public_base_url().to_string());
            validity = profile.validity;
            order_profiles = profile.order_profiles;
            crl_shards = Some(config.crl.shards);
        }
        if let Some(url) = &args.public_base_url {
            base_url = Some(url.clone());
        }
        let weak_keys = pkix::DebianWeakKeys::load(args.debian_weak_keys.as_slice())?;
        Ok(Settings {
            since: args.since.unwrap_or(i64::MIN),
            now: store::now_ms(),
            page_size: args.page_size.clamp(1, 10_000),
            logs: logs
                .into_iter()
                .map(|log| (ct::log_id(&log.public_key_der), log))
                .collect(),
            policy,
            base_url,
            validity,
            order_profiles,
            crl_shards,
            caa_window_ms: millis(args.caa_window_secs),
            deadline_grace_ms: millis(args.deadline_grace_secs),
            weak_keys,
        })
    }

    /// The profile a leaf of `order_profile` listed on CRL `crl_name` was
    /// signed with, the AIA and CRL URLs under `base` (the fixed one, else
    /// the one the leaf names).
    pub fn profile(
        &self,
        base: &str,
        order_profile: domain::CertificateProfile,
        crl_name: &str,
    ) -> Profile {
        let mut profile = Profile::for_base_url(base);
        profile.validity = self.validity;
        profile.order_profiles = self.order_profiles.clone();
        profile.for_order(order_profile).for_crl_shard(crl_name)
    }
}

impl Settings {
    /// The longest a leaf of `profile` may live, in seconds as RFC 5280
    /// counts them (inclusive), and never more than the BRs allow.
    pub fn validity_secs(&self, profile: domain::CertificateProfile) -> i64 {
        let profile = self.profile("http://audit.invalid", profile, "0.crl");
        let secs = i64::try_from(profile.validity.as_secs()).unwrap_or(i64::MAX);
        secs.min(signer::certificate::MAX_LEAF_VALIDITY_SECS as i64)
    }
}

fn millis(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The all-in-one's fake CT logs, from the keys it keeps in
/// `DIR/ct-logs/log-N.key.pem`, named and operated as it runs them.
fn fake_logs(dir: &Path) -> anyhow::Result<Vec<CtLog>> {
    let mut logs = Vec::new();
    for i in 0.. {
        let path = dir.join(format!("log-{i}.key.pem"));
        let Ok(pem) = std::fs::read(&path) else { break };
        let key = openssl::pkey::PKey::private_key_from_pem(&pem)
            .with_context(|| format!("reading {}", path.display()))?;
        logs.push(CtLog::new(
            format!("kiln-fake-log-{i}"),
            String::new(),
            key.public_key_to_der()?,
            format!("Fake Operator {i}"),
        ));
    }
    Ok(logs)
}

/// `--since`: RFC 3339 (`2026-05-01T00:00:00Z`) or unix milliseconds.
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    let t =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("{text:?} is neither RFC 3339 nor unix milliseconds: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is out of range"))
}

/// `--ct-log URL=PUBLIC_KEY`: a log with that base64 DER key, named and
/// operated by its URL (as the all-in-one's flag).
pub fn parse_ct_log(text: &str) -> Result<CtLog, String> {
    use base64::Engine as _;
    let (url, key) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected URL=PUBLIC_KEY"))?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| format!("the public key of {url}: {e}"))?;
    pkix::public_key_from_spki(&key).map_err(|e| format!("the public key of {url}: {e}"))?;
    Ok(CtLog::new(url, url, key, url))
}

/// Opens the database without creating or migrating it.
pub async fn open(args: &AuditArgs) -> anyhow::Result<store::Store> {
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.data_dir.join("kiln.db").display()),
    };
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        anyhow::ensure!(Path::new(path).is_file(), "no Kiln database at {path}");
    }
    let store = store::Store::connect(&url)
        .await
        .context("opening the database")?;
    if let Some((applied, known)) = store.migrations_behind().await? {
        anyhow::bail!(
            "the database is at migration {applied} and this kiln knows {known}: run `kiln \
             migrate` with this build first (the audit reads what the newer schema records)"
        );
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_rfc3339_or_unix_ms() {
        assert_eq!(parse_since("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_since("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_since("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000)
        );
        assert!(parse_since("yesterday").is_err());
    }
}
