//! The last hour of this agent's own metrics, for charts that must show
//! more than the time a page has been open.
//!
//! A background job encodes the process registry every `interval` (as a
//! `/metrics` scrape would), parses the text, and appends one sample per
//! series to a ring of `capacity` samples. Counters stay cumulative: the
//! reader computes rates. Histogram buckets are skipped (their `_sum` and
//! `_count` are kept). Bounded: at most [`MAX_SERIES`] series (more are
//! counted in `dropped_series`, never stored), and a series absent from
//! every kept sample is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Most series kept.
pub const MAX_SERIES: usize = 4096;

/// A series: a metric name and its labels, in exposition order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

/// One series' values, aligned with [`Snapshot::times`] (`None`: absent).
#[derive(Debug, Clone)]
pub struct SeriesValues {
    pub key: SeriesKey,
    pub values: Vec<Option<f64>>,
}

/// What [`MetricsHistory::select`] answers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub interval: Duration,
    pub times: Vec<i64>,
    pub series: Vec<SeriesValues>,
    pub dropped_series: u64,
}

#[derive(Debug, Default)]
struct Ring {
    times: VecDeque<i64>,
    /// Values per series, aligned with `times` (NaN: absent).
    series: HashMap<SeriesKey, VecDeque<f64>>,
    dropped_series: u64,
}

/// The ring of samples.
#[derive(Debug)]
pub struct MetricsHistory {
    interval: Duration,
    capacity: usize,
    ring: Mutex<Ring>,
}

impl MetricsHistory {
    /// Keeps `window / interval` samples (at least two).
    pub fn new(interval: Duration, window: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(100));
        let capacity = (window.as_millis() / interval.as_millis()).clamp(2, 36_000) as usize;
        Self {
            interval,
            capacity,
            ring: Mutex::new(Ring::default()),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Samples `registry` every interval until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        registry: Arc<Registry>,
        now_ms: impl Fn() -> i64 + Send + 'static,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(history.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                let mut text = String::new();
                if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
                    tracing::warn!("metrics history: encoding the registry failed");
                    continue;
                }
                history.record(now_ms(), &text);
            }
        })
    }

    /// Appends one sample parsed from the text exposition format.
    pub fn record(&self, at_ms: i64, exposition: &str) {
        let mut ring = self.ring.lock();
        let Ring {
            times,
            series,
            dropped_series,
        } = &mut *ring;
        let depth = times.len();
        times.push_back(at_ms);
        for (key, value) in exposition.lines().filter_map(parse_line) {
            if let Some(values) = series.get_mut(&key) {
                // (A series listed twice keeps its first value.)
                if values.len() == depth {
                    values.push_back(value);
                }
            } else if series.len() < MAX_SERIES {
                let mut values = VecDeque::with_capacity(depth + 1);
                values.extend(std::iter::repeat_n(f64::NAN, depth));
                values.push_back(value);
                series.insert(key, values);
            } else {
                *dropped_series += 1;
            }
        }
        for values in series.values_mut() {
            if values.len() == depth {
                values.push_back(f64::NAN);
            }
        }
        if times.len() > self.capacity {
            times.pop_front();
            for values in series.values_mut() {
                values.pop_front();
            }
            series.retain(|_, v| v.iter().any(|x| !x.is_nan()));
        }
    }

    /// The series of the metrics named `names`.
    pub fn select(&self, names: &[&str]) -> Snapshot {
        let ring = self.ring.lock();
        let mut series: Vec<SeriesValues> = ring
            .series
            .iter()
            .filter(|(k, _)| names.contains(&k.name.as_str()))
            .map(|(k, v)| SeriesValues {
                key: k.clone(),
                values: v.iter().map(|x| (!x.is_nan()).then_some(*x)).collect(),
            })
            .collect();
        series.sort_by(|a, b| (&a.key.name, &a.key.labels).cmp(&(&b.key.name, &b.key.labels)));
        Snapshot {
            interval: self.interval,
            times: ring.times.iter().copied().collect(),
            series,
            dropped_series: ring.dropped_series,
        }
    }
}

/// One sample line: `name{label="value",…} number`. Comments, histogram
/// buckets and `_created` lines are skipped.
fn parse_line(line: &str) -> Option<(SeriesKey, f64)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.ends_with("_bucket") || name.ends_with("_created") {
        return None;
    }
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (Vec::new(), &line[name_end..]),
    };
    // A timestamp or exemplar may follow the value.
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((
        SeriesKey {
            name: name.to_owned(),
            labels,
        },
        value,
    ))
}

/// Labels up to the closing `}`, and the rest of the line.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches(',');
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].to_owned();
        let mut chars = s[eq + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[eq + 1 + 1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn parses_the_exposition_format() {
        assert_eq!(
            parse_line(r#"silt_x_total{topic="a \"q\"",op="produce"} 12 1700000000"#),
            Some((
                key("silt_x_total", &[("topic", "a \"q\""), ("op", "produce")]),
                12.0
            ))
        );
        assert_eq!(parse_line("silt_up 1"), Some((key("silt_up", &[]), 1.0)));
        assert_eq!(parse_line(r#"silt_s_bucket{le="0.1"} 3"#), None);
        assert_eq!(parse_line("# HELP silt_up Up"), None);
        assert_eq!(parse_line(r#"silt_bad{topic="unterminated} 3"#), None);
    }

    #[test]
    fn keeps_a_bounded_window_aligned_by_sample() {
        let h = MetricsHistory::new(Duration::from_secs(1), Duration::from_secs(3));
        h.record(1, "a 1\n");
        h.record(2, "a 2\nb 5\n");
        h.record(3, "b 6\n");
        let s = h.select(&["a", "b"]);
        assert_eq!(s.times, [1, 2, 3]);
        assert_eq!(s.series[0].values, [Some(1.0), Some(2.0), None]);
        assert_eq!(s.series[1].values, [None, Some(5.0), Some(6.0)]);
        h.record(4, "b 7\n");
        h.record(5, "b 8\n");
        let s = h.select(&["a", "b"]);
        assert_eq!(s.times, [3, 4, 5]);
        assert_eq!(
            s.series.len(),
            1,
            "a series absent from every kept sample is forgotten"
        );
        assert_eq!(s.series[0].values, [Some(6.0), Some(7.0), Some(8.0)]);
    }

    #[test]
    fn stops_adding_series_at_the_bound() {
        let h = MetricsHistory::new(Duration::from_secs(1), Duration::from_secs(60));
        let text: String = (0..MAX_SERIES + 10)
            .map(|i| format!("m{{i=\"{i}\"}} 1\n"))
            .collect();
        h.record(1, &text);
        let s = h.select(&["m"]);
        assert_eq!((s.series.len(), s.dropped_series), (MAX_SERIES, 10));
    }
}
