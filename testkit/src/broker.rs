//! The local broker's users for tests: the administrator (guest, for clean-up and inspection
//! only) and the least-privilege user of each component, created by `scripts/broker-users.py`
//! (run by `scripts/ensure-services.sh`) from `libs/protocol/broker-acl.json`.

use std::net::SocketAddr;
use std::path::PathBuf;

use authstack_protocol::broker::{Component, acl};

/// The local broker's address.
pub fn broker_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5672))
}

/// The administrator's URL (`AMQP_URL` overrides): only for deleting a test's queues and
/// exchanges, never for running a component.
pub fn admin_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Where `scripts/broker-users.py` keeps the generated passwords.
pub fn passwords_file() -> PathBuf {
    let base = std::env::var_os("AUTHSTACK_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("authstack")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/authstack")))
        .unwrap_or_else(|| PathBuf::from(".cache/authstack"));
    base.join("broker-users.json")
}

/// The password of `component`'s broker user.
pub fn password(component: Component) -> String {
    let path = passwords_file();
    let user = &acl().user(component).user;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/ensure-services.sh (it creates the broker users)",
            path.display()
        )
    });
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    map.get(user)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{} has no password for {user}", path.display()))
        .to_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The AMQP URL of `component`'s broker user at `addr` (the broker, or a proxy in front of it).
pub fn component_url(component: Component, addr: SocketAddr) -> String {
    amqp_url(&acl().user(component).user, &password(component), addr)
}

/// The AMQP URL of `user` with `password` on the AuthStack vhost at `addr`.
pub(crate) fn amqp_url(user: &str, password: &str, addr: SocketAddr) -> String {
    format!(
        "amqp://{}:{}@{addr}/{}",
        percent_encode(user),
        percent_encode(password),
        percent_encode(&acl().vhost)
    )
}

/// Publishes `body` to `exchange` with `routing_key` over `conn` with publisher confirms, and
/// returns the broker's refusal as `Err`: a refused publish (no permission, no such exchange)
/// closes the channel, which the next synchronous operation on it reports.
pub async fn publish_confirmed(
    conn: &lapin::Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> Result<(), lapin::Error> {
    use lapin::options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions};
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default(),
        )
        .await?
        .await?;
    // Any round trip on the channel will do; basic.qos needs no permission.
    channel.basic_qos(1, BasicQosOptions::default()).await
}
