//! The wire contract between Kiln's stages: queue names and job messages.
//!
//! Messages carry ids, never state (invariant 1): a worker reads the order
//! from the database. Bodies are MessagePack maps with named fields
//! (`rmp_serde::to_vec_named`), so a field can be added with a default and
//! workers of two versions decode each other's messages during a rolling
//! deploy (invariant 9). The golden vectors in `vectors/` pin that contract.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// The version this build writes. Readers accept any version: unknown fields
/// are ignored and missing ones take their defaults.
pub const MESSAGE_VERSION: u16 = 1;

/// One queue per stage (the signer serves both signing steps), and the
/// queue of dead letters.
pub mod queues {
    pub const VALIDATOR: &str = "kiln.validator";
    pub const CAA_CHECKER: &str = "kiln.caa-checker";
    pub const SIGNER: &str = "kiln.signer";
    pub const CT_SUBMITTER: &str = "kiln.ct-submitter";
    /// Every stage queue.
    pub const ALL: [&str; 4] = [VALIDATOR, CAA_CHECKER, SIGNER, CT_SUBMITTER];
    /// Where the queue of a remote perspective's name begins (MPIC).
    pub const PERSPECTIVE_PREFIX: &str = "kiln.perspective.";

    /// The queue of the remote perspective `name` (a `validator` started
    /// with `[validator] perspective = "name"`): each has its own, so that
    /// every perspective repeats every check.
    pub fn perspective(name: &str) -> String {
        format!("{PERSPECTIVE_PREFIX}{name}")
    }
    /// Every message a stage rejected or that was delivered too often,
    /// whatever its stage, kept for an operator to inspect; no stage
    /// consumes it.
    pub const DEAD: &str = "kiln.dead";
}

/// A unit of work for one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Job {
    /// Check a challenge the client said is ready (validator).
    ValidateChallenge { challenge_id: String },
    /// Recheck CAA for stale authorizations of a finalizing order (caa-checker).
    CheckCaa { order_id: String },
    /// Reserve a serial and sign the precertificate (signer).
    SignPrecert { order_id: String },
    /// Obtain SCTs for the order's precertificate (ct-submitter).
    SubmitCt { order_id: String },
    /// Sign the final certificate with the SCTs embedded (signer).
    SignFinal { order_id: String },
    /// Log the issued final certificate with the CT logs, best effort
    /// (ct-submitter). Its outcome never changes the order.
    SubmitFinal { order_id: String },
    /// Repeat a challenge's check (and its CAA check) from one remote
    /// perspective (MPIC, BR 3.2.2.9), after the primary's passed.
    Corroborate {
        challenge_id: String,
        perspective: String,
    },
    /// Decide a challenge's corroboration once every remote perspective has
    /// answered or its deadline has passed (validator).
    TallyCorroboration { challenge_id: String },
    /// Repeat the finalize-time CAA recheck of `names` (as the order asked
    /// for them, `*.` kept) from one remote perspective, after the
    /// caa-checker's own passed.
    CorroborateCaa {
        order_id: String,
        perspective: String,
        /// The order's account, for CAA `accounturi`.
        account_id: String,
        names: Vec<CaaName>,
    },
    /// Decide the CAA recheck's corroboration (caa-checker).
    TallyCaa { order_id: String },
}

impl Job {
    /// The queue whose stage handles this job.
    pub fn queue(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Job::ValidateChallenge { .. } | Job::TallyCorroboration { .. } => {
                queues::VALIDATOR.into()
            }
            Job::CheckCaa { .. } | Job::TallyCaa { .. } => queues::CAA_CHECKER.into(),
            Job::SignPrecert { .. } | Job::SignFinal { .. } => queues::SIGNER.into(),
            Job::SubmitCt { .. } | Job::SubmitFinal { .. } => queues::CT_SUBMITTER.into(),
            Job::Corroborate { perspective, .. } | Job::CorroborateCaa { perspective, .. } => {
                queues::perspective(perspective).into()
            }
        }
    }

    /// The order or challenge this job is about, for logs and spans.
    pub fn subject_id(&self) -> &str {
        match self {
            Job::ValidateChallenge { challenge_id }
            | Job::Corroborate { challenge_id, .. }
            | Job::TallyCorroboration { challenge_id } => challenge_id,
            Job::CheckCaa { order_id }
            | Job::CorroborateCaa { order_id, .. }
            | Job::TallyCaa { order_id }
            | Job::SignPrecert { order_id }
            | Job::SubmitCt { order_id }
            | Job::SignFinal { order_id }
            | Job::SubmitFinal { order_id } => order_id,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Job::ValidateChallenge { .. } => "validate-challenge",
            Job::CheckCaa { .. } => "check-caa",
            Job::SignPrecert { .. } => "sign-precert",
            Job::SubmitCt { .. } => "submit-ct",
            Job::SignFinal { .. } => "sign-final",
            Job::SubmitFinal { .. } => "submit-final",
            Job::Corroborate { .. } => "corroborate",
            Job::TallyCorroboration { .. } => "tally-corroboration",
            Job::CorroborateCaa { .. } => "corroborate-caa",
            Job::TallyCaa { .. } => "tally-caa",
        }
    }
}

/// One name of a CAA recheck, with the challenge type that validated it
/// (for `validationmethods`; `None` when not known, which such a record
/// refuses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaaName {
    pub name: String,
    pub method: Option<String>,
}

/// What travels on the queue: the job plus delivery bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default = "default_version")]
    pub v: u16,
    pub job: Job,
    /// 1 for the first delivery; incremented by each retry.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

fn default_version() -> u16 {
    MESSAGE_VERSION
}

fn first_attempt() -> u32 {
    1
}

impl Envelope {
    pub fn new(job: Job) -> Self {
        Envelope {
            v: MESSAGE_VERSION,
            job,
            attempt: 1,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Encoding plain structs of strings and integers cannot fail.
        rmp_serde::to_vec_named(self).expect("envelope encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> Vec<(&'static str, Envelope)> {
        let id = "ord_0123456789abcdef".to_string();
        vec![
            (
                "validate-challenge.v1.msgpack",
                Envelope::new(Job::ValidateChallenge {
                    challenge_id: "chl_0123456789abcdef".into(),
                }),
            ),
            (
                "check-caa.v1.msgpack",
                Envelope::new(Job::CheckCaa {
                    order_id: id.clone(),
                }),
            ),
            (
                "sign-precert.v1.msgpack",
                Envelope::new(Job::SignPrecert {
                    order_id: id.clone(),
                }),
            ),
            (
                "submit-ct.v1.msgpack",
                Envelope::new(Job::SubmitCt {
                    order_id: id.clone(),
                }),
            ),
            (
                "sign-final.v1.msgpack",
                Envelope {
                    v: 1,
                    job: Job::SignFinal {
                        order_id: id.clone(),
                    },
                    attempt: 3,
                },
            ),
            (
                "submit-final.v1.msgpack",
                Envelope::new(Job::SubmitFinal { order_id: id }),
            ),
            (
                "corroborate.v1.msgpack",
                Envelope::new(Job::Corroborate {
                    challenge_id: "chl_0123456789abcdef".into(),
                    perspective: "arin-1".into(),
                }),
            ),
            (
                "tally-corroboration.v1.msgpack",
                Envelope::new(Job::TallyCorroboration {
                    challenge_id: "chl_0123456789abcdef".into(),
                }),
            ),
            (
                "corroborate-caa.v1.msgpack",
                Envelope::new(Job::CorroborateCaa {
                    order_id: "ord_0123456789abcdef".into(),
                    perspective: "arin-1".into(),
                    account_id: "acct_0123".into(),
                    names: vec![
                        CaaName {
                            name: "*.a.test".into(),
                            method: Some("dns-01".into()),
                        },
                        CaaName {
                            name: "a.test".into(),
                            method: None,
                        },
                    ],
                }),
            ),
            (
                "tally-caa.v1.msgpack",
                Envelope::new(Job::TallyCaa {
                    order_id: "ord_0123456789abcdef".into(),
                }),
            ),
        ]
    }

    fn vector_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("vectors")
            .join(name)
    }

    /// The checked-in bytes decode to the expected jobs: a worker built from
    /// this tree understands messages written by the version that made them.
    /// Set KILN_BLESS_VECTORS=1 to write vectors for a new message.
    #[test]
    fn golden_vectors_decode() {
        for (name, want) in golden() {
            let path = vector_path(name);
            if std::env::var_os("KILN_BLESS_VECTORS").is_some() && !path.exists() {
                std::fs::write(&path, want.encode()).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(Envelope::decode(&bytes).unwrap(), want, "{name}");
        }
    }

    /// A newer writer may add fields; this reader ignores them. An older one
    /// may omit `attempt`; this reader defaults it.
    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_defaulted() {
        #[derive(Serialize)]
        struct Future<'a> {
            v: u16,
            job: FutureJob<'a>,
            attempt: u32,
            trace_hint: &'a str,
        }
        #[derive(Serialize)]
        struct FutureJob<'a> {
            kind: &'a str,
            order_id: &'a str,
            priority: u8,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            v: 2,
            job: FutureJob {
                kind: "sign-final",
                order_id: "o1",
                priority: 9,
            },
            attempt: 2,
            trace_hint: "x",
        })
        .unwrap();
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(
            env.job,
            Job::SignFinal {
                order_id: "o1".into()
            }
        );
        assert_eq!(env.attempt, 2);

        #[derive(Serialize)]
        struct Old<'a> {
            job: Job,
            #[serde(skip)]
            _p: std::marker::PhantomData<&'a ()>,
        }
        let bytes = rmp_serde::to_vec_named(&Old {
            job: Job::CheckCaa {
                order_id: "o2".into(),
            },
            _p: Default::default(),
        })
        .unwrap();
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!((env.v, env.attempt), (1, 1));
    }

    #[test]
    fn every_job_routes_to_its_stage_queue() {
        for (_, env) in golden() {
            let queue = env.job.queue();
            let perspective = queue.starts_with(queues::PERSPECTIVE_PREFIX);
            assert!(queues::ALL.contains(&&*queue) || perspective, "{queue}");
        }
        let corroborate = Job::Corroborate {
            challenge_id: "c".into(),
            perspective: "ripe-2".into(),
        };
        assert_eq!(corroborate.queue(), "kiln.perspective.ripe-2");
        assert_eq!(
            Job::SignFinal {
                order_id: "x".into()
            }
            .queue(),
            queues::SIGNER
        );
        assert_eq!(
            Job::SubmitFinal {
                order_id: "x".into()
            }
            .queue(),
            queues::CT_SUBMITTER
        );
    }

    /// The wire names are part of the contract: a renamed variant would
    /// make old and new workers drop each other's jobs.
    #[test]
    fn job_kinds_are_stable() {
        let names: Vec<&str> = golden().iter().map(|(_, env)| env.job.name()).collect();
        assert_eq!(
            names,
            [
                "validate-challenge",
                "check-caa",
                "sign-precert",
                "submit-ct",
                "sign-final",
                "submit-final",
                "corroborate",
                "tally-corroboration",
                "corroborate-caa",
                "tally-caa"
            ]
        );
        #[derive(Deserialize)]
        struct Kind {
            kind: String,
        }
        #[derive(Deserialize)]
        struct Wire {
            job: Kind,
        }
        for (file, env) in golden() {
            assert!(file.starts_with(env.job.name()), "{file}");
            let wire: Wire = rmp_serde::from_slice(&env.encode()).unwrap();
            assert_eq!(wire.job.kind, env.job.name(), "{file}");
        }
    }
}
