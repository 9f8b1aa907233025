//! Errors of the gateway, saying which side failed.

use std::path::PathBuf;

/// Which side of a flow an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (a VPN device or the explicit-proxy user).
    Client,
    /// The real server.
    Upstream,
    /// Gatehouse itself.
    Internal,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Internal => "internal",
        })
    }
}

/// Why the gateway could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The interception CA could not be loaded or created.
    #[error("interception CA: {0}")]
    Ca(#[from] gatehouse_certs::CertError),
    /// The upstream TLS client could not be built (bad extra roots).
    #[error("{0}")]
    Upstream(String),
    /// The app catalog (`intercept.app_catalog`) could not be loaded.
    #[error("{0}")]
    Catalog(String),
    /// The event journal failed.
    #[error("event journal {path}: {reason}")]
    Events {
        /// The journal directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// ClickHouse could not be reached or refused a query.
    #[error("ClickHouse ({what}): {source}")]
    ClickHouse {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// An event query could not be run as asked.
    #[error("{0}")]
    Query(String),
    /// The console cannot start (key file, certificate).
    #[error("console: {0}")]
    Console(String),
}
