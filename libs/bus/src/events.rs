//! Domain events on the topic exchange: a buffered publisher and a fan-out subscriber.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authstack_protocol::Event;
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::BusError;
use crate::supervise::{connection_failed, supervise};
use crate::topology;

/// Publishes domain events. Events are buffered in memory (bounded) while the broker is
/// unreachable and published after reconnecting; [`EventPublisher::publish`] never blocks.
#[derive(Clone)]
pub struct EventPublisher {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventPublisher {
    /// Starts the publisher's connection supervisor.
    pub fn start(
        url: String,
        exchange: String,
        connection_name: String,
        buffer: usize,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let rx = Arc::new(tokio::sync::Mutex::new(Outbox { rx, retry: None }));
        tokio::spawn(async move {
            let exchange = Arc::new(exchange);
            supervise(url, connection_name, shutdown.clone(), |conn| {
                publish_session(conn, exchange.clone(), rx.clone(), shutdown.clone())
            })
            .await;
        });
        EventPublisher {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an event for publication; drops it (and counts it) when the buffer is full.
    pub fn publish(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("authstack_events_dropped_total").increment(1);
        }
    }

    /// Events dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Events waiting for the broker, shared by successive sessions.
struct Outbox {
    rx: mpsc::Receiver<Event>,
    /// An event whose publication failed; published first after reconnecting.
    retry: Option<Event>,
}

async fn publish_session(
    conn: Arc<Connection>,
    exchange: Arc<String>,
    outbox: Arc<tokio::sync::Mutex<Outbox>>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let channel = conn.create_channel().await?;
    topology::events_exchange(&channel, &exchange, false).await?;
    let mut outbox = outbox.lock().await;
    let failure = connection_failed(&conn);
    tokio::pin!(failure);
    loop {
        let event = match outbox.retry.take() {
            Some(event) => event,
            None => tokio::select! {
                _ = shutdown.cancelled() => {
                    // Flush what is already queued, briefly.
                    while let Ok(event) = outbox.rx.try_recv() {
                        let _ = publish_one(&channel, &exchange, &event).await;
                    }
                    return Ok(());
                }
                e = &mut failure => return Err(e),
                event = outbox.rx.recv() => match event {
                    Some(e) => e,
                    None => return Ok(()),
                },
            },
        };
        if let Err(e) = publish_one(&channel, &exchange, &event).await {
            tracing::warn!(error = %e, kind = event.kind.routing_key(), "event publish failed; will retry after reconnecting");
            outbox.retry = Some(event);
            return Err(e);
        }
        metrics::counter!("authstack_events_published_total", "kind" => event.kind.routing_key())
            .increment(1);
    }
}

/// How long a publish (and its confirmation) may take before the session is given up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes one event body (persistent, its id as the AMQP `message_id`, so consumers can
/// deduplicate) and returns the broker's pending confirmation.
async fn publish_body(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    event_id: &str,
    body: &[u8],
) -> Result<PublisherConfirm, BusError> {
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(event_id.into())
        .with_delivery_mode(2);
    let publish = channel.basic_publish(
        exchange.into(),
        routing_key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    );
    Ok(tokio::time::timeout(PUBLISH_TIMEOUT, publish)
        .await
        .map_err(|_| BusError::Timeout("publishing an event"))??)
}

async fn publish_one(channel: &Channel, exchange: &str, event: &Event) -> Result<(), BusError> {
    let body = serde_json::to_vec(event).map_err(|e| BusError::Lost(e.to_string()))?;
    let id = event.id.to_string();
    let confirm = publish_body(channel, exchange, event.kind.routing_key(), &id, &body).await?;
    tokio::time::timeout(PUBLISH_TIMEOUT, confirm)
        .await
        .map_err(|_| BusError::Timeout("publishing an event"))??;
    Ok(())
}

/// A channel on the events exchange in publisher-confirm mode: a publish counts only once the
/// broker has confirmed it (for a durable exchange and persistent message: taken
/// responsibility for it). For relays that must not lose what they hand over.
pub struct ConfirmedPublisher {
    channel: Channel,
    exchange: String,
}

/// A publish waiting for the broker's confirmation.
pub struct PendingConfirm(PublisherConfirm);

impl ConfirmedPublisher {
    async fn open(conn: &Connection, exchange: &str) -> Result<Self, BusError> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology::events_exchange(&channel, exchange, false).await?;
        Ok(ConfirmedPublisher {
            channel,
            exchange: exchange.to_owned(),
        })
    }

    /// Publishes an already serialized event; await [`PendingConfirm::confirmed`] to know the
    /// broker has it. Several publishes may be pending at once.
    pub async fn publish(
        &self,
        routing_key: &str,
        event_id: &str,
        body: &[u8],
    ) -> Result<PendingConfirm, BusError> {
        publish_body(&self.channel, &self.exchange, routing_key, event_id, body)
            .await
            .map(PendingConfirm)
    }
}

impl PendingConfirm {
    /// Waits for the broker's confirmation; a negative one (or none in time) is an error.
    pub async fn confirmed(self) -> Result<(), BusError> {
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.0)
            .await
            .map_err(|_| BusError::Timeout("waiting for a publisher confirm"))??
        {
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) => Err(BusError::Lost("the broker refused an event".into())),
            Confirmation::NotRequested => Err(BusError::Lost(
                "publisher confirms are not enabled on this channel".into(),
            )),
        }
    }
}

/// Runs `relay` on a supervised connection with a [`ConfirmedPublisher`] on `exchange`, until
/// `shutdown`. `relay` runs until its publisher fails (return the error: a fresh connection and
/// publisher follow, with backoff); a lost connection also ends it.
pub async fn run_relay<R, Fut>(
    url: String,
    exchange: String,
    connection_name: String,
    shutdown: CancellationToken,
    relay: R,
) where
    R: Fn(ConfirmedPublisher) -> Fut + Clone,
    Fut: Future<Output = Result<(), BusError>>,
{
    supervise(url, connection_name, shutdown.clone(), |conn| {
        let exchange = exchange.clone();
        let shutdown = shutdown.clone();
        let relay = relay.clone();
        async move {
            let publisher = ConfirmedPublisher::open(&conn, &exchange).await?;
            tokio::select! {
                _ = shutdown.cancelled() => Ok(()),
                e = connection_failed(&conn) => Err(e),
                r = relay(publisher) => r,
            }
        }
    })
    .await;
}

/// Receives domain events through an exclusive queue bound to the exchange and fans them out
/// to in-process subscribers: one broker subscription per process, however many in-process
/// consumers. It only checks that the exchange exists (auth-svc declares it; the gateway's
/// broker user may not), retrying until it does, and resubscribes after every reconnect.
#[derive(Clone)]
pub struct EventSubscriber {
    events: broadcast::Sender<Event>,
    sessions: watch::Receiver<u64>,
}

impl EventSubscriber {
    /// Starts the subscriber; `binding_keys` are topic patterns such as `#` or `keys.*`;
    /// events larger than `max_message_bytes` are dropped unread.
    pub fn start(
        url: String,
        exchange: String,
        binding_keys: Vec<String>,
        connection_name: String,
        max_message_bytes: usize,
        shutdown: CancellationToken,
    ) -> Self {
        let (events, _) = broadcast::channel(4096);
        let (sessions_tx, sessions) = watch::channel(0u64);
        let sender = events.clone();
        tokio::spawn(async move {
            let config = Arc::new((exchange, binding_keys, max_message_bytes));
            let sessions_tx = Arc::new(sessions_tx);
            supervise(url, connection_name, shutdown.clone(), |conn| {
                subscribe_session(
                    conn,
                    config.clone(),
                    sender.clone(),
                    sessions_tx.clone(),
                    shutdown.clone(),
                )
            })
            .await;
        });
        EventSubscriber { events, sessions }
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Counts established broker sessions; it changes after every (re)connect, when events
    /// may have been missed.
    pub fn sessions(&self) -> watch::Receiver<u64> {
        self.sessions.clone()
    }
}

async fn subscribe_session(
    conn: Arc<Connection>,
    config: Arc<(String, Vec<String>, usize)>,
    events: broadcast::Sender<Event>,
    sessions: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let (exchange, keys, max_bytes) = &*config;
    let channel = conn.create_channel().await?;
    topology::events_exchange(&channel, exchange, true).await?;
    let (queue, mut consumer) = topology::private_queue(&channel).await?;
    for key in keys {
        channel
            .queue_bind(
                queue.clone(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    sessions.send_modify(|n| *n += 1);
    let failure = connection_failed(&conn);
    tokio::pin!(failure);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            e = &mut failure => return Err(e),
            delivery = consumer.next() => match delivery {
                Some(Ok(d)) if d.data.len() > *max_bytes => {
                    metrics::counter!("authstack_events_oversized_total").increment(1);
                    tracing::warn!(bytes = d.data.len(), "ignoring an oversized event");
                }
                Some(Ok(d)) => match serde_json::from_slice::<Event>(&d.data) {
                    Ok(event) => { let _ = events.send(event); }
                    Err(e) => tracing::warn!(error = %e, "ignoring an unreadable event"),
                },
                Some(Err(e)) => return Err(BusError::Amqp(e)),
                None => return Err(BusError::Lost("event consumer cancelled".into())),
            },
        }
    }
}
