//! Multi-Perspective Issuance Corroboration (BR 3.2.2.9): how many remote
//! perspectives must agree with the primary, from how many regions, and how
//! many a CA must run at a given date. Pure: the fan-out and the records
//! live elsewhere.

use serde::{Deserialize, Serialize};

/// An RIR service region (BR 1.6.1, "IP Address Registration Authority"):
/// corroborating remotes must span at least two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Region {
    #[serde(rename = "ARIN")]
    Arin,
    #[serde(rename = "RIPE")]
    Ripe,
    #[serde(rename = "APNIC")]
    Apnic,
    #[serde(rename = "LACNIC")]
    Lacnic,
    #[serde(rename = "AFRINIC")]
    Afrinic,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Arin => "ARIN",
            Region::Ripe => "RIPE",
            Region::Apnic => "APNIC",
            Region::Lacnic => "LACNIC",
            Region::Afrinic => "AFRINIC",
        }
    }
}

impl std::str::FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "ARIN" => Ok(Region::Arin),
            "RIPE" | "RIPE NCC" => Ok(Region::Ripe),
            "APNIC" => Ok(Region::Apnic),
            "LACNIC" => Ok(Region::Lacnic),
            "AFRINIC" => Ok(Region::Afrinic),
            _ => Err(format!(
                "unknown RIR region {s:?} (one of ARIN, RIPE, APNIC, LACNIC, AFRINIC)"
            )),
        }
    }
}

/// What a failed corroboration does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// The challenge is `invalid` (the BRs since 2025-09-15).
    #[default]
    Enforce,
    /// Logged and counted, never blocking: a staged rollout, as Let's
    /// Encrypt ran before enforcing.
    ObserveOnly,
}

/// How many remote perspectives may fail to corroborate (BR 3.2.2.9's
/// table): 1 of 2–5, 2 of 6 or more; none with fewer than 2, where there
/// is no quorum to speak of.
pub fn allowed_failures(remotes: usize) -> usize {
    match remotes {
        0 | 1 => 0,
        2..=5 => 1,
        _ => 2,
    }
}

/// The phased minimum of remote perspectives (BR 3.2.2.9) at `now_secs`
/// (unix seconds): 2 from 2025-03-15, 3 from 2026-03-15, 4 from
/// 2026-06-15, 5 from 2026-12-15.
pub fn required_remotes(now_secs: i64) -> usize {
    const PHASES: [(i64, usize); 4] = [
        (1_797_292_800, 5), // 2026-12-15
        (1_781_481_600, 4), // 2026-06-15
        (1_773_532_800, 3), // 2026-03-15
        (1_741_996_800, 2), // 2025-03-15
    ];
    PHASES
        .iter()
        .find(|(from, _)| now_secs >= *from)
        .map_or(0, |(_, n)| *n)
}

/// What one remote perspective found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Finding {
    /// It saw what the primary saw.
    Corroborated,
    /// It saw something else: what (bounded, for the client's subproblem).
    Disagreed { saw: String },
    /// No answer before the deadline: counts as not corroborating.
    TimedOut,
}

/// A remote perspective's finding, with where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub perspective: String,
    pub region: Option<Region>,
    pub finding: Finding,
}

/// The quorum's decision over every configured remote perspective.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub corroborated: usize,
    pub remotes: usize,
    /// Distinct regions among the corroborating remotes.
    pub regions: usize,
    /// `None` when the quorum holds; otherwise why not.
    pub failure: Option<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// BR 5.4.1's form, e.g. "3/4": agreeing remotes of those tried.
    pub fn summary(&self) -> String {
        format!("{}/{}", self.corroborated, self.remotes)
    }
}

/// Decides over `outcomes`, one per configured remote perspective (those
/// that never answered as [`Finding::TimedOut`]). `region_rule` applies
/// the two-region requirement; an all-in-one whose perspectives all live on
/// one machine leaves it off unless regions were given.
pub fn decide(outcomes: &[Outcome], region_rule: bool) -> Verdict {
    let remotes = outcomes.len();
    let agreeing: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.finding == Finding::Corroborated)
        .collect();
    let mut regions: Vec<Region> = agreeing.iter().filter_map(|o| o.region).collect();
    regions.sort();
    regions.dedup();
    let needed = remotes - allowed_failures(remotes);
    let failure = if agreeing.len() < needed {
        Some(format!(
            "{} of {remotes} remote perspectives corroborated; {needed} must",
            agreeing.len()
        ))
    } else if region_rule && remotes > 0 && regions.len() < 2 {
        Some(format!(
            "the corroborating remote perspectives span {} region(s); 2 must",
            regions.len()
        ))
    } else {
        None
    };
    Verdict {
        corroborated: agreeing.len(),
        remotes,
        regions: regions.len(),
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, region: Region, finding: Finding) -> Outcome {
        Outcome {
            perspective: name.into(),
            region: Some(region),
            finding,
        }
    }

    fn ok(name: &str, region: Region) -> Outcome {
        outcome(name, region, Finding::Corroborated)
    }

    fn saw(name: &str, region: Region) -> Outcome {
        let finding = Finding::Disagreed {
            saw: "another A record".into(),
        };
        outcome(name, region, finding)
    }

    #[test]
    fn the_brs_table_of_allowed_failures() {
        let table: Vec<usize> = (0..=8).map(allowed_failures).collect();
        assert_eq!(table, [0, 0, 1, 1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn the_phased_minimum_by_date() {
        assert_eq!(required_remotes(1_741_996_799), 0);
        assert_eq!(required_remotes(1_741_996_800), 2);
        assert_eq!(required_remotes(1_773_532_800), 3);
        assert_eq!(required_remotes(1_781_481_600), 4);
        // Early December 2026: still 4; from the 15th, 5.
        assert_eq!(required_remotes(1_796_256_000), 4);
        assert_eq!(required_remotes(1_797_292_800), 5);
    }

    #[test]
    fn one_of_three_may_disagree_two_may_not() {
        use Region::*;
        let one = [ok("a", Arin), ok("b", Ripe), saw("c", Apnic)];
        let verdict = decide(&one, true);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.summary(), "2/3");

        let two = [ok("a", Arin), saw("b", Ripe), saw("c", Apnic)];
        let verdict = decide(&two, true);
        assert!(!verdict.passed());
        assert_eq!(verdict.summary(), "1/3");
    }

    #[test]
    fn a_timeout_counts_as_not_corroborating() {
        use Region::*;
        let outcomes = [
            ok("a", Arin),
            outcome("b", Ripe, Finding::TimedOut),
            outcome("c", Apnic, Finding::TimedOut),
        ];
        assert!(!decide(&outcomes, true).passed());
    }

    #[test]
    fn six_remotes_allow_two_failures() {
        use Region::*;
        let mut outcomes = vec![ok("a", Arin), ok("b", Ripe), ok("c", Apnic), ok("d", Arin)];
        outcomes.extend([saw("e", Lacnic), saw("f", Afrinic)]);
        assert!(decide(&outcomes, true).passed());
        outcomes[0] = saw("a", Arin);
        assert!(!decide(&outcomes, true).passed());
    }

    #[test]
    fn corroboration_from_one_region_fails_the_region_rule_only() {
        use Region::*;
        let outcomes = [ok("a", Arin), ok("b", Arin), saw("c", Ripe)];
        let verdict = decide(&outcomes, true);
        assert!(!verdict.passed());
        assert!(verdict.failure.unwrap().contains("region"));
        assert!(decide(&outcomes, false).passed());
    }

    #[test]
    fn regions_parse_case_insensitively() {
        assert_eq!("ripe ncc".parse::<Region>(), Ok(Region::Ripe));
        assert_eq!("Arin".parse::<Region>(), Ok(Region::Arin));
        assert!("EU".parse::<Region>().is_err());
    }
}
