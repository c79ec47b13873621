//! Latency samples and their summary.

use serde::Serialize;
use std::time::Duration;

/// Percentiles of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Nearest-rank percentile of sorted samples (`q` in 0..=1).
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

impl Latency {
    /// Summarizes samples given in nanoseconds.
    pub fn from_nanos(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let count = samples.len();
        let mean_us = if count == 0 {
            0.0
        } else {
            samples.iter().map(|&n| n as f64).sum::<f64>() / count as f64 / 1000.0
        };
        Self {
            count,
            mean_us,
            p50_us: percentile(&samples, 0.50),
            p90_us: percentile(&samples, 0.90),
            p99_us: percentile(&samples, 0.99),
            max_us: samples.last().map_or(0.0, |&n| n as f64 / 1000.0),
        }
    }
}

pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Microseconds shown with a sensible precision.
pub fn us(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let latency = Latency::from_nanos((1..=100).map(|n| n * 1000).collect());
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_us, 50.0);
        assert_eq!(latency.p99_us, 99.0);
        assert_eq!(latency.max_us, 100.0);
        assert!((latency.mean_us - 50.5).abs() < 1e-9);
        assert_eq!(Latency::from_nanos(Vec::new()).p50_us, 0.0);
    }
}
