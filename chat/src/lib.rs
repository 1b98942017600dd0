//! A chat service built on AuthStack, and the proof that a third party can trust AuthStack's
//! tokens from its JWKS alone.
//!
//! - [`config`]: flags and environment variables.
//! - [`keys`]: access-token verification from the gateway's JWKS (refreshed on unknown kids).
//! - [`auth`]: the auth interceptor (bearer token → [`auth::Caller`]).
//! - [`routes`]: the REST API (chats, members, messages) and membership checks.
//! - [`ws`]: the live WebSocket of a chat.
//! - [`live`]: `LISTEN`/`NOTIFY` fan-out across replicas.
//! - [`db`]: the `chat` schema, its migrations and queries.
//! - [`error`]: the platform's error model and request ids.
//! - [`metrics`]: names of the metrics of the shared server loop.
//! - [`extract`]: JSON request bodies (bounded, timed, [`authstack_http`]).

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod state;
pub mod tls;
pub mod ws;

pub use config::Config;
pub use startup::Application;
