//! Names of the metrics the gateway records through shared code (the server loop,
//! `authstack_http::server`); every other metric is named where it is recorded.

use authstack_http::server::ServerMetrics;

/// Gauge: client connections being served.
pub const OPEN_CONNECTIONS: &str = "authstack_gateway_open_connections";
/// Counter, label `phase`: connections closed by the header or idle timeout.
pub const CONNECTIONS_TIMED_OUT: &str = "authstack_gateway_connections_timed_out_total";

/// The server loop's metrics.
pub const SERVER: ServerMetrics = ServerMetrics {
    open_connections: OPEN_CONNECTIONS,
    timed_out: CONNECTIONS_TIMED_OUT,
};
