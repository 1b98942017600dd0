//! Queue declarations shared by the clients and servers, so every side declares them alike.

use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Consumer, Queue};

use crate::BusError;

/// Declares the durable RPC request queue (idempotent; also returns its consumer count).
pub(crate) async fn rpc_queue(channel: &Channel, name: &str) -> Result<Queue, BusError> {
    Ok(channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?)
}

/// Declares a server-named, exclusive, auto-deleted queue for this connection and consumes it
/// without acknowledgements (replies and events: losing them with the connection is fine).
pub(crate) async fn private_queue(channel: &Channel) -> Result<(ShortString, Consumer), BusError> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions::exclusive().auto_delete(),
            FieldTable::default(),
        )
        .await?;
    let consumer = consume_without_ack(channel, queue.name().clone()).await?;
    Ok((queue.name().clone(), consumer))
}

/// Consumes `queue` exclusively, without acknowledgements.
pub(crate) async fn consume_without_ack(
    channel: &Channel,
    queue: ShortString,
) -> Result<Consumer, BusError> {
    Ok(channel
        .basic_consume(
            queue,
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?)
}

/// Deletes queues and exchanges (e.g. a test's or a benchmark's own), ignoring ones that are
/// already gone.
pub async fn delete(url: &str, queues: &[&str], exchanges: &[&str]) -> Result<(), BusError> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let conn =
        crate::supervise::connect(url, "authstack-cleanup", std::time::Duration::from_secs(5))
            .await?;
    for queue in queues {
        // A channel per deletion: a failed one (404) closes its channel.
        let channel = conn.create_channel().await?;
        let _ = channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in exchanges {
        let channel = conn.create_channel().await?;
        let _ = channel
            .exchange_delete((*exchange).into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
