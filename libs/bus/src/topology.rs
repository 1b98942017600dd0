//! Declarations shared by the clients and servers, so every side declares them alike.
//!
//! auth-svc owns the topology: it declares the durable RPC queue, the request exchange (direct)
//! bound to it, and the events exchange. The gateway's broker user may not declare any of them
//! (see `authstack_protocol::broker`): it only checks them passively and declares its own
//! server-named queues.

use authstack_protocol::broker::Names;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Consumer, ExchangeKind, Queue};

use crate::BusError;

/// Declares the RPC queue and the request exchange and binds them (auth-svc; idempotent).
pub(crate) async fn declare_rpc(channel: &Channel, names: &Names) -> Result<(), BusError> {
    channel
        .queue_declare(
            names.rpc_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            names.rpc_exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            names.rpc_queue.as_str().into(),
            names.rpc_exchange.as_str().into(),
            names.rpc_queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Looks the RPC queue up without declaring it (no permission needed); returns its consumer
/// count. Fails (and closes the channel) when auth-svc has not declared it yet.
pub(crate) async fn inspect_rpc_queue(channel: &Channel, name: &str) -> Result<Queue, BusError> {
    Ok(channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?)
}

/// Declares the events topic exchange: for real (`passive = false`, auth-svc) or only checking
/// that it exists (`passive = true`, the gateway).
pub(crate) async fn events_exchange(
    channel: &Channel,
    name: &str,
    passive: bool,
) -> Result<(), BusError> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                passive,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
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

/// Whether a reply address is one of the gateway's own: a server-named queue or direct
/// reply-to. auth-svc answers nowhere else, so a forged request cannot make it publish into
/// another queue (the RPC queue itself, say).
pub(crate) fn is_reply_address(reply_to: &str) -> bool {
    reply_to.starts_with("amq.gen-") || reply_to.starts_with("amq.rabbitmq.reply-to")
}

/// Deletes queues and exchanges (e.g. a test's or a benchmark's own), ignoring ones that are
/// already gone.
pub async fn delete(url: &str, queues: &[&str], exchanges: &[&str]) -> Result<(), BusError> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let conn =
        crate::supervise::connect(url, "authstack-cleanup", crate::supervise::CONNECT_TIMEOUT)
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

/// Deletes every queue and exchange of `names`.
pub async fn delete_names(url: &str, names: &Names) -> Result<(), BusError> {
    delete(
        url,
        &[&names.rpc_queue],
        &[&names.rpc_exchange, &names.events_exchange],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::is_reply_address;

    #[test]
    fn only_private_reply_queues_are_answered() {
        assert!(is_reply_address("amq.gen-JzTY20BRgKO-HjmUJj0wLg"));
        assert!(is_reply_address("amq.rabbitmq.reply-to.g1h2AA5yZXBseUAy"));
        assert!(!is_reply_address("auth.rpc"));
        assert!(!is_reply_address(""));
    }
}
