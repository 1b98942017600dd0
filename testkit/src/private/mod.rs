//! Private PostgreSQL and RabbitMQ servers for tests that stop, restart or kill a dependency.
//!
//! Each server gets its own scratch directory (data, logs, configuration) and its own loopback
//! ports, so a test may do anything to it without touching the shared instances on 5432 and
//! 5672. Dropping a server stops it and deletes its directory — also when the test panics.
//!
//! As root, the servers run as their Debian service users (`postgres`, `rabbitmq`): PostgreSQL
//! refuses to run as root, and RabbitMQ's files stay owned by its user. Otherwise they run as
//! the current user.

mod postgres;
mod process;
mod rabbitmq;

pub use postgres::{PrivatePostgres, StopMode};
pub use rabbitmq::PrivateRabbitMq;

/// Errors starting, stopping or locating a private server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A server program is missing.
    #[error("{program} not found ({hint})")]
    NotInstalled {
        /// The program looked for.
        program: &'static str,
        /// Where it was looked for, and how to get it.
        hint: String,
    },
    /// Running a program or preparing files failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program ran but failed, or a server did not come up in time.
    #[error("{what}\n--- log tail ---\n{log}")]
    Failed {
        /// What failed.
        what: String,
        /// The end of the server's log.
        log: String,
    },
}

impl ServerError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
        let what = what.into();
        move |source| ServerError::Io { what, source }
    }
}
