//! Logging, metrics and the shutdown signal, shared by every AuthStack binary.
//!
//! Logs go through `tracing`: human-readable text by default, one JSON object per line when
//! `LOG_FORMAT=json` (what the container images set). `RUST_LOG` filters as usual.
//! Metrics use the `metrics` facade with a Prometheus recorder; binaries serve
//! [`Metrics::render`] on `/metrics`.

mod request;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

pub use request::{InRequest, REQUEST_SPAN, RequestFormat, current_request, in_request};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// The environment variable selecting the [`LogFormat`].
pub const LOG_FORMAT_ENV: &str = "LOG_FORMAT";

impl LogFormat {
    /// Reads `LOG_FORMAT` (`json` or `text`; default text).
    pub fn from_env() -> Self {
        match std::env::var(LOG_FORMAT_ENV).as_deref() {
            Ok("json") | Ok("JSON") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Installs the global `tracing` subscriber. `default_filter` applies when `RUST_LOG` is unset.
/// Lines logged [`in_request`] are written inside that request's span ([`RequestFormat`]).
/// Calling it twice is harmless (the second call does nothing).
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .map_event_format(RequestFormat::json)
            .try_init(),
        LogFormat::Text => builder.map_event_format(RequestFormat::text).try_init(),
    };
}

/// A handle that renders the process's metrics in Prometheus text format.
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

impl Metrics {
    /// The Prometheus text exposition of every metric recorded so far.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

/// Latency buckets (seconds) for request and reconcile durations: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder drains recorded histogram samples into its buckets. The recorder
/// keeps every sample (16 bytes: the value and its time) until it is drained, by this upkeep or
/// by a render (a scrape); without the upkeep a process nobody scraped grew without bound.
/// (The exporter's drain can lose a sample recorded at the very moment of a swap: counts of a
/// histogram may fall a little below a matching counter's.)
pub const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Buckets for counts per event (metrics whose name ends in `_calls`, e.g. RPC calls per broker
/// message): powers of two up to 256 (the largest `GATEWAY_RPC_MAX_BATCH` accepts).
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the global Prometheus recorder once per process and returns its handle.
///
/// Metrics whose name ends in `_seconds` are histograms with [`LATENCY_BUCKETS`], those ending
/// in `_calls` with [`COUNT_BUCKETS`] (any other histogram would be rendered as a summary). Recorded
/// histogram samples are drained every [`METRICS_UPKEEP_INTERVAL`], scraped or not.
pub fn metrics() -> Metrics {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_calls".into()), COUNT_BUCKETS))
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                spawn_upkeep(handle.clone());
                handle
            }
            // Another recorder is already installed (e.g. two apps in one test process):
            // keep a private recorder so rendering still works.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    });
    Metrics(handle.clone())
}

/// Runs the recorder's upkeep every [`METRICS_UPKEEP_INTERVAL`] on a thread of its own, so it
/// neither needs a runtime nor waits behind one. A panic in one upkeep is logged and the next
/// one runs (a dead thread would bring the growth back unnoticed).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                let upkeep = std::panic::AssertUnwindSafe(|| handle.run_upkeep());
                if std::panic::catch_unwind(upkeep).is_err() {
                    tracing::error!("the metrics upkeep panicked; retrying next interval");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histogram samples are drained only by scrapes");
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_are_rendered() {
        let m = metrics();
        metrics::counter!("telemetry_test_total", "kind" => "x").increment(3);
        metrics::histogram!("telemetry_test_seconds").record(0.002);
        let text = m.render();
        assert!(
            text.contains("telemetry_test_total{kind=\"x\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("telemetry_test_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
        metrics::histogram!("telemetry_test_calls").record(3.0);
        let text = m.render();
        assert!(
            text.contains("telemetry_test_calls_bucket{le=\"4\"} 1"),
            "a count is a histogram with count buckets: {text}"
        );
        // A second call returns a handle to the same recorder.
        assert!(metrics().render().contains("telemetry_test_total"));
    }
}
