//! The AuthStack gateway: the only entry point for clients.
//!
//! REST on axum/hyper. It verifies access tokens itself ([`auth`], with a cache of verified
//! tokens and keys from auth-svc via [`keys`]), turns requests into RPC calls to auth-svc over
//! RabbitMQ, and maps error codes to HTTP statuses ([`error`]). [`ws`] serves live events and
//! RPC over a WebSocket.

pub mod auth;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod extract;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod request_id;
pub mod revocations;
pub mod routes;
pub mod startup;
pub mod state;
pub mod token_cache;
pub mod ws;
pub mod ws_hub;

pub use config::Config;
pub use startup::Application;
