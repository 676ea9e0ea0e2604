//! Fixtures shared by the unit tests of the submission modules.

use super::{CtLog, LogKind, Requirement};
use ct::Sct;

pub(super) fn log(name: &str, operator: &str) -> CtLog {
    CtLog::new(name, "", Vec::new(), operator)
}

pub(super) fn static_log(name: &str, operator: &str) -> CtLog {
    CtLog {
        kind: LogKind::StaticCt,
        ..log(name, operator)
    }
}

pub(super) fn sct() -> Sct {
    Sct {
        version: 0,
        log_id: [0; 32],
        timestamp: 0,
        extensions: Vec::new(),
        hash_alg: 4,
        sig_alg: 3,
        signature: Vec::new(),
    }
}

pub(super) const DAY: i64 = 86_400;
pub(super) const T0: i64 = 1_800_000_000;

pub(super) fn need(scts: usize, operators: usize, rfc6962: usize) -> Requirement {
    Requirement {
        scts,
        operators,
        rfc6962,
    }
}
