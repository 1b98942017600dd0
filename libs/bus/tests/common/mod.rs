#![allow(dead_code)]

/// The real broker used by the tests.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The broker's TCP address.
pub fn broker_addr() -> std::net::SocketAddr {
    "127.0.0.1:5672".parse().unwrap()
}

/// Queue and exchange names no other test uses.
pub fn unique_names() -> authstack_bus::Names {
    authstack_bus::Names::scoped(&format!("t{}", uuid::Uuid::new_v4().simple()))
}

/// Deletes a test's queue and exchanges.
pub async fn delete_queue(names: &authstack_bus::Names) {
    authstack_bus::delete_names(&amqp_url(), names)
        .await
        .unwrap();
}

/// Polls `f` until it returns true or `secs` elapse.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    f()
}
