//! The AuthStack gateway: the only entry point for clients.
//!
//! REST on axum/hyper. It verifies access tokens itself ([`auth`], with a cache of verified
//! tokens and keys from auth-svc via [`keys`]), turns requests into RPC calls to auth-svc over
//! RabbitMQ, and maps error codes to HTTP statuses ([`error`]).

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod keys;
pub mod middleware;
pub mod routes;
pub mod startup;
pub mod state;

pub use config::Config;
pub use startup::Application;
