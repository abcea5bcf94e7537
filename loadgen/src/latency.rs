//! Latency recording (HdrHistogram, microseconds) and how latencies are written for people.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The slowest latency a histogram tracks exactly; slower samples are clamped to it.
const HIGHEST_MICROS: u64 = 300_000_000;

/// A latency histogram in microseconds, 3 significant digits (0.1% resolution).
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// An empty histogram from 1 µs to 300 s.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self(Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)?))
    }

    /// Records one sample; sub-microsecond samples count as 1 µs, very slow ones are clamped.
    pub fn record(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds another worker's samples.
    pub fn merge(&mut self, other: &Latencies) -> anyhow::Result<()> {
        self.0.add(&other.0)?;
        Ok(())
    }

    /// How many samples were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The percentiles that reports show.
    pub fn summary(&self) -> Summary {
        if self.0.is_empty() {
            return Summary::default();
        }
        Summary {
            p50_us: self.0.value_at_quantile(0.50),
            p99_us: self.0.value_at_quantile(0.99),
            p999_us: self.0.value_at_quantile(0.999),
            max_us: self.0.max(),
            mean_us: self.0.mean(),
        }
    }
}

/// Latency percentiles in microseconds (all zero when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest sample.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Summary {
    /// `p50 412 µs · p99 1.83 ms · p99.9 4.10 ms · max 12.0 ms`.
    pub fn human(&self) -> String {
        format!(
            "p50 {} · p99 {} · p99.9 {} · max {}",
            format_micros(self.p50_us),
            format_micros(self.p99_us),
            format_micros(self.p999_us),
            format_micros(self.max_us)
        )
    }
}

/// A latency for people: whole microseconds under 1 ms, then three significant digits in ms or s.
pub fn format_micros(us: u64) -> String {
    if us < 1_000 {
        return format!("{us} µs");
    }
    // Round to three significant digits first, so that 999,999 µs reads "1.00 s", not "1000 ms".
    let digits = us.ilog10() + 1;
    let step = 10u64.pow(digits - 3);
    let rounded = us.saturating_add(step / 2) / step * step;
    if rounded < 1_000_000 {
        format!("{} ms", three_digits(rounded, 1_000))
    } else {
        format!("{} s", three_digits(rounded, 1_000_000))
    }
}

/// `value / unit` written with three significant digits (`1.23`, `12.3`, `123`), for a `value`
/// already rounded to three significant digits and at least `unit`; more integer digits stay.
fn three_digits(value: u64, unit: u64) -> String {
    let (whole, frac) = (value / unit, value % unit);
    if whole < 10 {
        format!("{whole}.{:02}", frac * 100 / unit)
    } else if whole < 100 {
        format!("{whole}.{}", frac * 10 / unit)
    } else {
        whole.to_string()
    }
}

/// A rate for people: `12,345` (whole numbers, thousands separated) or `12.3` below 100.
pub fn format_rate(per_second: f64) -> String {
    if !per_second.is_finite() {
        return "n/a".into();
    }
    if per_second < 100.0 {
        return format!("{per_second:.1}");
    }
    group_thousands(per_second.round() as u64)
}

/// `1234567` → `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn micros_are_written_with_a_fitting_unit() {
        for (us, want) in [
            (0, "0 µs"),
            (1, "1 µs"),
            (999, "999 µs"),
            (1_000, "1.00 ms"),
            (1_234, "1.23 ms"),
            (9_996, "10.0 ms"),
            (12_345, "12.3 ms"),
            (99_960, "100 ms"),
            (123_456, "123 ms"),
            (999_999, "1.00 s"),
            (1_500_000, "1.50 s"),
            (61_000_000, "61.0 s"),
            (1_234_000_000, "1230 s"),
        ] {
            assert_eq!(format_micros(us), want, "{us}");
        }
    }

    #[test]
    fn rates_are_grouped() {
        assert_eq!(format_rate(12.345), "12.3");
        assert_eq!(format_rate(123.4), "123");
        assert_eq!(format_rate(12_345.6), "12,346");
        assert_eq!(format_rate(1_234_567.0), "1,234,567");
        assert_eq!(format_rate(f64::NAN), "n/a");
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(100_000), "100,000");
    }

    #[test]
    fn percentiles_come_from_the_samples() {
        let mut lat = Latencies::new().unwrap();
        assert_eq!(lat.summary(), Summary::default());
        for us in 1..=1000u64 {
            lat.record(Duration::from_micros(us));
        }
        let s = lat.summary();
        assert_eq!(lat.len(), 1000);
        // Three significant digits: within 0.1% of the exact value.
        assert!((499..=501).contains(&s.p50_us), "{s:?}");
        assert!((989..=991).contains(&s.p99_us), "{s:?}");
        assert!((998..=1000).contains(&s.p999_us), "{s:?}");
        assert!((999..=1001).contains(&s.max_us), "{s:?}");
        assert_eq!(
            Summary {
                p50_us: 412,
                p99_us: 1_830,
                p999_us: 4_100,
                max_us: 12_000,
                mean_us: 0.0
            }
            .human(),
            "p50 412 µs · p99 1.83 ms · p99.9 4.10 ms · max 12.0 ms"
        );
    }

    #[test]
    fn merging_and_clamping() {
        let mut a = Latencies::new().unwrap();
        let mut b = Latencies::new().unwrap();
        a.record(Duration::from_nanos(10)); // below 1 µs counts as 1 µs
        b.record(Duration::from_secs(100_000)); // beyond the range is clamped, not lost
        a.merge(&b).unwrap();
        assert_eq!(a.len(), 2);
        let s = a.summary();
        assert_eq!(s.p50_us, 1);
        assert!(s.max_us >= HIGHEST_MICROS * 999 / 1000, "{s:?}");
    }
}
