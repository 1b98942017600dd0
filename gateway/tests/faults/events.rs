//! A consumer on the events exchange, as a downstream service would run one: a durable queue
//! bound to every routing key (so events wait there while the consumer reconnects or the
//! broker restarts), manual acks, reconnects under `authstack_bus::supervise`. It records
//! every delivery by event id; at-least-once means duplicates by id are allowed and counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authstack_bus::{BusError, CancellationToken, supervise};
use authstack_protocol::{Event, EventKind};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};
use uuid::Uuid;

/// The events exchange (the services' default name).
const EXCHANGE: &str = "auth.events";
/// The consumer's own durable queue.
const QUEUE: &str = "faults.events";

/// Every event received, by id, with how often it was delivered.
#[derive(Default)]
pub struct EventLog {
    pub by_id: HashMap<Uuid, (Event, usize)>,
    /// Messages on the exchange that are not events.
    pub malformed: usize,
}

impl EventLog {
    /// Distinct events of `kind` concerning `account`.
    pub fn count_for_account(&self, kind: EventKind, account: Uuid) -> usize {
        self.by_id
            .values()
            .filter(|(e, _)| e.kind == kind && e.account_id == Some(account))
            .count()
    }

    /// Distinct `account.logged_in` events of `session`.
    pub fn logins_of_session(&self, session: Uuid) -> usize {
        self.by_id
            .values()
            .filter(|(e, _)| {
                e.kind == EventKind::AccountLoggedIn
                    && e.data["session_id"].as_str() == Some(&session.to_string())
            })
            .count()
    }

    /// Deliveries beyond the first, over all events.
    pub fn redeliveries(&self) -> usize {
        self.by_id.values().map(|(_, n)| n - 1).sum()
    }
}

/// The running consumer.
pub struct EventCounter {
    pub log: Arc<Mutex<EventLog>>,
    shutdown: CancellationToken,
}

impl EventCounter {
    /// Starts consuming; returns once the queue is bound (so no later event is missed).
    pub async fn start(amqp_url: String) -> EventCounter {
        let log = Arc::new(Mutex::new(EventLog::default()));
        let shutdown = CancellationToken::new();
        let (bound_tx, mut bound) = tokio::sync::watch::channel(false);
        let bound_tx = Arc::new(bound_tx);
        {
            let (log, shutdown) = (log.clone(), shutdown.clone());
            tokio::spawn(supervise(
                amqp_url,
                "faults-event-counter".into(),
                shutdown,
                move |conn| consume(conn, log.clone(), bound_tx.clone()),
            ));
        }
        tokio::time::timeout(Duration::from_secs(30), bound.wait_for(|b| *b))
            .await
            .expect("the event consumer binds its queue")
            .expect("the event consumer runs");
        EventCounter { log, shutdown }
    }

    /// Waits until `done(log)` holds, or `timeout` passed; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&EventLog) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if done(&self.log.lock().unwrap()) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EventCounter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn consume(
    conn: Arc<Connection>,
    log: Arc<Mutex<EventLog>>,
    bound: Arc<tokio::sync::watch::Sender<bool>>,
) -> Result<(), BusError> {
    let channel = conn.create_channel().await?;
    // auth-svc owns the exchange: until it declared it, this fails and the session starts over.
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            QUEUE.into(),
            EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel.basic_qos(256, BasicQosOptions::default()).await?;
    let mut deliveries = channel
        .basic_consume(
            QUEUE.into(),
            "faults-event-counter".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    bound.send_replace(true);
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        {
            let mut log = log.lock().unwrap();
            match serde_json::from_slice::<Event>(&delivery.data) {
                Ok(event) => log.by_id.entry(event.id).or_insert((event, 0)).1 += 1,
                Err(_) => log.malformed += 1,
            }
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    Err(BusError::Lost("event consumer stream ended".into()))
}
