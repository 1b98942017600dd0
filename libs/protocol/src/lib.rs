//! Wire types shared by the gateway, auth-svc and clients.
//!
//! - [`error`]: the stable error codes (`domain.description`) and their HTTP statuses.
//! - [`rpc`]: the RabbitMQ RPC envelope and every method with its parameters and result.
//! - [`event`]: domain events published on the `auth.events` topic exchange.
//! - [`model`]: accounts, token pairs, access-token claims and the public key set.
//! - [`validate`]: field validation shared by both sides, so errors look the same everywhere.

pub mod error;
pub mod event;
pub mod model;
pub mod rpc;
pub mod validate;

pub use error::{ErrorBody, ErrorCode, FieldError};
pub use event::{Event, EventKind};
pub use model::{AccessClaims, Account, AccountPage, KeySet, TokenPair};
pub use rpc::{Call, CallContext, RpcReply, RpcRequest};
