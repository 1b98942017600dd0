//! Connection supervision: connect with backoff, run a session, reconnect when it fails.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// First delay before reconnecting after a failed attempt or a lost session.
pub const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts (jitter included).
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);
/// How long one connection attempt may take (TCP, TLS and the AMQP handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing a finished connection may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnect delays: exponential from [`RECONNECT_MIN_DELAY`], doubling, with jitter (so the
/// replicas of a service do not reconnect in lockstep after a broker restart), never longer
/// than [`RECONNECT_MAX_DELAY`], without end.
fn reconnect_delays() -> impl Iterator<Item = Duration> {
    // backon's jitter adds up to the delay itself: halving the cap keeps jittered delays below it.
    ExponentialBuilder::new()
        .with_min_delay(RECONNECT_MIN_DELAY)
        .with_max_delay(RECONNECT_MAX_DELAY / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .map(|d| d.min(RECONNECT_MAX_DELAY))
}

/// Opens one AMQP connection, giving up after `timeout`.
pub async fn connect(url: &str, name: &str, timeout: Duration) -> Result<Connection, BusError> {
    let props = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    tokio::time::timeout(timeout, Connection::connect(url, props))
        .await
        .map_err(|_| BusError::Timeout("connecting to the broker"))?
        .map_err(BusError::from)
}

/// Resolves when the connection reports an error (socket closed, broker gone, heartbeat missed).
///
/// lapin also reports a channel closed by the broker (a refused passive declare, say) as an
/// error event of its connection; the connection itself is still up then, so that one is
/// ignored here and left to whoever owns the channel.
pub async fn connection_failed(conn: &Connection) -> BusError {
    let mut events = Box::pin(conn.events_listener());
    while let Some(event) = events.next().await {
        if let lapin::Event::Error(e) = event {
            if conn.status().connected() {
                tracing::debug!(error = %e, "a channel failed; the connection is still up");
                continue;
            }
            return BusError::Amqp(e);
        }
    }
    BusError::Lost("connection event stream ended".into())
}

/// Runs `session` on fresh connections until `shutdown` is cancelled.
///
/// `session` gets a connected [`Connection`] (shared so it can be closed afterwards); it returns `Ok(())` only for a clean shutdown,
/// and an error when the connection or its channels failed, after which this function
/// reconnects with backoff.
pub async fn supervise<S, Fut>(
    url: String,
    name: String,
    shutdown: CancellationToken,
    mut session: S,
) where
    S: FnMut(Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<(), BusError>>,
{
    let mut delays = reconnect_delays();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&url, &name, CONNECT_TIMEOUT) => c,
        };
        match connected {
            Ok(conn) => {
                let conn = Arc::new(conn);
                delays = reconnect_delays();
                tracing::info!(component = %name, "connected to the message broker");
                let result = session(conn.clone()).await;
                let _ =
                    tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "closing".into())).await;
                match result {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(component = %name, error = %e, "broker session ended; reconnecting")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(component = %name, error = %e, "cannot reach the message broker; retrying")
            }
        }
        let delay = delays.next().unwrap_or(RECONNECT_MAX_DELAY);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_with_jitter_and_stay_under_the_cap() {
        let delays: Vec<Duration> = reconnect_delays().take(12).collect();
        assert_eq!(delays.len(), 12, "the sequence never ends");
        assert!(delays.iter().all(|d| *d >= RECONNECT_MIN_DELAY));
        assert!(delays.iter().all(|d| *d <= RECONNECT_MAX_DELAY));
        // Late delays are near the cap: the sequence grows.
        assert!(delays[11] >= RECONNECT_MAX_DELAY / 2, "{delays:?}");
        // Jitter: two fresh sequences differ somewhere.
        let other: Vec<Duration> = reconnect_delays().take(12).collect();
        assert_ne!(delays, other);
    }
}
