//! The last hour of this agent's own metrics, for charts that must show
//! more than the time a page has been open.
//!
//! A background job encodes the process registry every `interval` (as a
//! `/metrics` scrape would), parses the text, and appends one sample per
//! series to a ring of `capacity` samples. Counters stay cumulative: the
//! reader computes rates. Histogram buckets are skipped (their `_sum` and
//! `_count` are kept). Bounded: at most [`MAX_SERIES`] series and
//! [`MAX_VALUES`] values in all (values of further series are counted as
//! dropped, never stored), and a series absent from every kept sample is
//! forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Most series kept.
pub const MAX_SERIES: usize = 4096;
/// Most values kept, over all series and samples (32 MiB).
pub const MAX_VALUES: usize = 4 << 20;

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
    /// Values not kept because the history held its most series.
    pub dropped_values: u64,
}

#[derive(Debug)]
struct Series {
    /// Aligned with the ring's `times` (NaN: absent).
    values: VecDeque<f64>,
    /// The number of the last sample that had this series.
    last_seen: u64,
}

#[derive(Debug, Default)]
struct Ring {
    times: VecDeque<i64>,
    series: HashMap<SeriesKey, Series>,
    /// Samples recorded so far.
    samples: u64,
    dropped_values: u64,
}

/// The ring of samples.
#[derive(Debug)]
pub struct MetricsHistory {
    interval: Duration,
    capacity: usize,
    max_series: usize,
    ring: Mutex<Ring>,
}

impl MetricsHistory {
    /// Keeps `window / interval` samples (2 to 36,000).
    pub fn new(interval: Duration, window: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(100));
        let capacity = (window.as_millis() / interval.as_millis()).clamp(2, 36_000) as usize;
        Self {
            interval,
            capacity,
            max_series: MAX_SERIES.min(MAX_VALUES / capacity),
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
        let parsed: Vec<(SeriesKey, f64)> = exposition.lines().filter_map(parse_line).collect();
        let mut ring = self.ring.lock();
        let Ring {
            times,
            series,
            samples,
            dropped_values,
        } = &mut *ring;
        let depth = times.len();
        *samples += 1;
        let now = *samples;
        times.push_back(at_ms);
        for (key, value) in parsed {
            if let Some(s) = series.get_mut(&key) {
                // (A series listed twice keeps its first value.)
                if s.last_seen != now {
                    s.values.push_back(value);
                    s.last_seen = now;
                }
            } else if series.len() < self.max_series {
                let mut values = VecDeque::with_capacity(depth + 1);
                values.extend(std::iter::repeat_n(f64::NAN, depth));
                values.push_back(value);
                series.insert(
                    key,
                    Series {
                        values,
                        last_seen: now,
                    },
                );
            } else {
                *dropped_values += 1;
            }
        }
        for s in series.values_mut() {
            if s.last_seen != now {
                s.values.push_back(f64::NAN);
            }
        }
        if times.len() > self.capacity {
            times.pop_front();
            for s in series.values_mut() {
                s.values.pop_front();
            }
            let capacity = self.capacity as u64;
            series.retain(|_, s| now - s.last_seen < capacity);
        }
    }

    /// The series of the metrics named `names`, over the last `last`
    /// samples (all kept when `None`).
    pub fn select(&self, names: &[&str], last: Option<usize>) -> Snapshot {
        let ring = self.ring.lock();
        let skip = last.map_or(0, |n| ring.times.len().saturating_sub(n));
        let mut series: Vec<SeriesValues> = ring
            .series
            .iter()
            .filter(|(k, _)| names.contains(&k.name.as_str()))
            .map(|(k, s)| SeriesValues {
                key: k.clone(),
                values: s
                    .values
                    .iter()
                    .skip(skip)
                    .map(|x| (!x.is_nan()).then_some(*x))
                    .collect(),
            })
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect();
        series.sort_by(|a, b| (&a.key.name, &a.key.labels).cmp(&(&b.key.name, &b.key.labels)));
        Snapshot {
            interval: self.interval,
            times: ring.times.iter().skip(skip).copied().collect(),
            series,
            dropped_values: ring.dropped_values,
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
        let s = h.select(&["a", "b"], None);
        assert_eq!(s.times, [1, 2, 3]);
        assert_eq!(s.series[0].values, [Some(1.0), Some(2.0), None]);
        assert_eq!(s.series[1].values, [None, Some(5.0), Some(6.0)]);
        h.record(4, "b 7\n");
        h.record(5, "b 8\n");
        let s = h.select(&["a", "b"], None);
        assert_eq!(s.times, [3, 4, 5]);
        assert_eq!(
            s.series.len(),
            1,
            "a series absent from every kept sample is forgotten"
        );
        assert_eq!(s.series[0].values, [Some(6.0), Some(7.0), Some(8.0)]);
        let s = h.select(&["b"], Some(2));
        assert_eq!(
            (s.times, s.series[0].values.clone()),
            (vec![4, 5], vec![Some(7.0), Some(8.0)])
        );
    }

    #[test]
    fn stops_adding_series_at_the_bound() {
        let h = MetricsHistory::new(Duration::from_secs(1), Duration::from_secs(60));
        let text: String = (0..MAX_SERIES + 10)
            .map(|i| format!("m{{i=\"{i}\"}} 1\n"))
            .collect();
        h.record(1, &text);
        h.record(2, &text);
        let s = h.select(&["m"], None);
        assert_eq!((s.series.len(), s.dropped_values), (MAX_SERIES, 20));
        // Long windows keep fewer series, so the values stay bounded.
        let long = MetricsHistory::new(Duration::from_millis(100), Duration::from_secs(3600));
        long.record(1, &text);
        assert_eq!(long.select(&["m"], None).series.len(), MAX_VALUES / 36_000);
    }
}
