//! The `[server]` settings: timeouts, drain, and the bounds on calls, connections and requests
//! still arriving, each validated once with the setting named in every problem.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Problems;

/// Server behaviour.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The longest an RPC may run: the deadline of calls that set none, and the cap of those
    /// that set a longer one.
    pub request_timeout: Duration,
    /// How long in-flight RPCs may run after the server stops accepting.
    pub shutdown_grace: Duration,
    /// How long the server keeps serving, NOT_SERVING, after a shutdown signal, so load
    /// balancers notice before connections are refused.
    pub drain_delay: Duration,
    /// Concurrent RPCs beyond which new ones are refused at once (RESOURCE_EXHAUSTED).
    pub max_in_flight: usize,
    /// Concurrent connections; past it the server stops accepting until one closes.
    pub max_connections: usize,
    /// Streams, server-wide, whose request has not yet arrived whole; past it, a new stream that
    /// does not arrive whole within a short grace is refused (RESOURCE_EXHAUSTED).
    pub max_unfinished_requests: usize,
    /// How long a connection may live: then the server asks the client to move (GOAWAY), so idle
    /// connections do not hold places for ever and long-lived clients spread over new replicas.
    pub max_connection_age: Duration,
    /// How long streams on an aged connection may still run (a watch resumes on a new one).
    pub max_connection_age_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
            drain_delay: Duration::from_secs(5),
            max_in_flight: 1024,
            max_connections: 4096,
            max_unfinished_requests: 1024,
            max_connection_age: Duration::from_secs(30 * 60),
            max_connection_age_grace: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// The `[server]` table.
pub struct RawServer {
    request_timeout: Option<String>,
    shutdown_grace: Option<String>,
    drain_delay: Option<String>,
    max_in_flight: Option<usize>,
    max_connections: Option<usize>,
    max_unfinished_requests: Option<usize>,
    max_connection_age: Option<String>,
    max_connection_age_grace: Option<String>,
}

impl RawServer {
    /// Validates the table; every problem goes to `problems`.
    pub fn validate(self, problems: &mut Problems) -> ServerSettings {
        let defaults = ServerSettings::default();
        ServerSettings {
            request_timeout: problems.duration(
                "server.request_timeout",
                self.request_timeout.as_deref(),
                defaults.request_timeout,
            ),
            shutdown_grace: problems.duration(
                "server.shutdown_grace",
                self.shutdown_grace.as_deref(),
                defaults.shutdown_grace,
            ),
            drain_delay: problems.zero_or_duration(
                "server.drain_delay",
                self.drain_delay.as_deref(),
                defaults.drain_delay,
            ),
            max_in_flight: count(
                problems,
                "server.max_in_flight",
                self.max_in_flight,
                defaults.max_in_flight,
            ),
            max_connections: count(
                problems,
                "server.max_connections",
                self.max_connections,
                defaults.max_connections,
            ),
            max_unfinished_requests: count(
                problems,
                "server.max_unfinished_requests",
                self.max_unfinished_requests,
                defaults.max_unfinished_requests,
            ),
            max_connection_age: problems.duration(
                "server.max_connection_age",
                self.max_connection_age.as_deref(),
                defaults.max_connection_age,
            ),
            max_connection_age_grace: problems.duration(
                "server.max_connection_age_grace",
                self.max_connection_age_grace.as_deref(),
                defaults.max_connection_age_grace,
            ),
        }
    }
}

/// A count setting: from 1 to a million.
fn count(problems: &mut Problems, setting: &str, value: Option<usize>, default: usize) -> usize {
    match value {
        Some(0) | Some(1_000_001..) => {
            problems.push(format!("{setting}: must be between 1 and 1000000"));
            default
        }
        Some(n) => n,
        None => default,
    }
}
