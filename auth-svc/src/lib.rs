//! auth-svc: the authentication service of AuthStack.
//!
//! An RPC server on RabbitMQ ([`authstack_bus::RpcServer`]) backed by PostgreSQL (schema
//! `auth`). [`startup::Application`] wires it; [`service::AuthService`] holds the logic:
//! registration, login with throttling, refresh-token rotation with reuse detection, logout,
//! account management, administration and access checks. Domain events go through a
//! transactional outbox ([`outbox`]). Tokens are signed with the active key
//! of the ring mounted from the operator's Secret ([`keys::KeyStore`]), reloaded without restart.

pub mod admin;
pub mod bearer;
pub mod config;
pub mod db;
pub mod health;
pub mod keys;
pub mod outbox;
pub mod passwords;
pub mod policy;
mod repo;
pub mod service;
pub mod startup;
pub mod throttle;
pub mod tokens;

pub use config::Config;
pub use startup::Application;
