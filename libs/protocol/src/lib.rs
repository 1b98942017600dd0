//! Wire types shared by the gateway, auth-svc and clients.
//!
//! - [`broker`]: broker names and the least-privilege user of each component.
//! - [`error`]: the stable error codes (`domain.description`) and their HTTP statuses.
//! - [`rpc`]: the RabbitMQ RPC envelope and every method with its parameters and result.
//! - [`event`]: domain events published on the `auth.events` topic exchange.
//! - [`model`]: accounts, token pairs, access-token claims and the public key set.
//! - [`validate`]: field validation shared by both sides, so errors look the same everywhere.
//! - [`chat`]: wire types of the example chat service and its WebSocket.
//! - [`ws`]: frames, topics and close codes of the gateway's WebSocket `/api/v1/ws`.
//! - [`limits`]: security floors and caps shared by auth-svc and the operator (argon2 minimums,
//!   the refresh reuse grace cap).

pub mod broker;
pub mod chat;
pub mod error;
pub mod event;
pub mod limits;
pub mod model;
pub mod rpc;
pub mod validate;
pub mod ws;

pub use error::{ErrorBody, ErrorCode, FieldError};
pub use event::{Event, EventKind, Revocation};
pub use model::{AccessClaims, Account, AccountPage, KeySet, TokenPair};
pub use rpc::{Call, CallContext, RpcReply, RpcRequest};
