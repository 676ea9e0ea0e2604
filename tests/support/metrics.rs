//! Reading a Kiln process's `/metrics` (Prometheus text) in the tests.

use std::collections::BTreeMap;
use std::time::Duration;

/// Prometheus text, parsed: (name, labels, value).
pub struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter_map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            Some((k.to_string(), v.trim_matches('"').to_string()))
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (head.to_string(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Scrape(series)
    }

    /// The values of `name` whose labels include `labels`.
    pub fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect()
    }

    /// Sum of the matching series; panics if there are none.
    pub fn sum(&self, who: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        let values = self.values(name, labels);
        assert!(
            !values.is_empty(),
            "{who}: no series {name}{labels:?} on /metrics"
        );
        values.iter().sum()
    }
}

/// The `/metrics` of the admin address `addr`, or why there are none (a
/// killed process does not answer).
pub async fn try_scrape(addr: &str) -> Result<Scrape, reqwest::Error> {
    let text = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(|r| r.error_for_status())?
        .text()
        .await?;
    Ok(Scrape::parse(&text))
}

/// The `/metrics` of `addr`; panics if it does not answer.
pub async fn scrape(addr: &str) -> Scrape {
    try_scrape(addr)
        .await
        .unwrap_or_else(|e| panic!("scraping {addr}: {e}"))
}
