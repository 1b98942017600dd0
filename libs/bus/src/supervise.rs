//! Connection supervision: connect with backoff, run a session, reconnect when it fails.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// Back to the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
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
pub async fn connection_failed(conn: &Connection) -> BusError {
    let mut events = Box::pin(conn.events_listener());
    while let Some(event) = events.next().await {
        if let lapin::Event::Error(e) = event {
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
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&url, &name, Duration::from_secs(5)) => c,
        };
        match connected {
            Ok(conn) => {
                let conn = Arc::new(conn);
                backoff.reset();
                tracing::info!(component = %name, "connected to the message broker");
                let result = session(conn.clone()).await;
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), conn.close(200, "closing".into()))
                        .await;
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
        let delay = backoff.next_delay();
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
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
