//! Load-generation helpers shared by the benchmark binaries.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The result of one load run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Requests that failed (unexpected status or transport error).
    pub failed: u64,
    /// Measured duration in seconds.
    pub seconds: f64,
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Maximum latency, milliseconds.
    pub max_ms: f64,
}

/// A latency histogram from 1 µs to 60 s with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_histogram()))
}

fn unreachable_histogram() -> Histogram<u64> {
    // `Histogram::new(3)` only fails for sigfig > 5; never reached.
    panic!("cannot create histogram")
}

/// Builds a report from a merged histogram (values in microseconds).
pub fn report(name: &str, hist: &Histogram<u64>, failed: u64, elapsed: Duration) -> Report {
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let seconds = elapsed.as_secs_f64();
    Report {
        name: name.to_owned(),
        ok: hist.len(),
        failed,
        seconds,
        rps: hist.len() as f64 / seconds,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: hist.max() as f64 / 1000.0,
    }
}
