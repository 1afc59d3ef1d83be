//! The `[cluster]` table.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::Problems;

/// How this replica reaches the others.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `redis://[user:password@]host:port[/db]`; it may hold a password, so it is secret.
    pub redis_url: SecretString,
    /// Prefix of every key and channel, so several gateways can share one Redis.
    pub key_prefix: String,
    /// How long a Redis command may take before the replica uses its local share.
    pub timeout: Duration,
    /// How long connecting to Redis may take.
    pub connect_timeout: Duration,
    /// How often this replica says it is alive.
    pub heartbeat_every: Duration,
    /// After how long without a heartbeat a replica no longer counts.
    pub member_ttl: Duration,
    /// How long the setup events poller's lease lasts unless renewed: how soon another replica
    /// takes over when the poller's replica dies.
    pub lease_ttl: Duration,
    /// The fewest replicas to assume when Redis is out of reach (set it to the deployment's
    /// replica count, so replicas that never reached Redis do not each use the whole limit).
    pub assume_replicas: u32,
}

/// The `[cluster]` table, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    redis_url: Option<String>,
    key_prefix: Option<String>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    heartbeat_every: Option<String>,
    member_ttl: Option<String>,
    lease_ttl: Option<String>,
    assume_replicas: Option<u32>,
}

impl RawCluster {
    /// Validates the table; `None` when no Redis is configured (one replica).
    pub fn validate(self, problems: &mut Problems) -> Option<ClusterSettings> {
        let timeout = problems.duration(
            "cluster.timeout",
            self.timeout.as_deref(),
            Duration::from_millis(50),
        );
        let connect_timeout = problems.duration(
            "cluster.connect_timeout",
            self.connect_timeout.as_deref(),
            Duration::from_millis(500),
        );
        let heartbeat_every = problems.duration(
            "cluster.heartbeat_every",
            self.heartbeat_every.as_deref(),
            Duration::from_secs(1),
        );
        let member_ttl = problems.duration(
            "cluster.member_ttl",
            self.member_ttl.as_deref(),
            Duration::from_secs(5),
        );
        let lease_ttl = problems.duration(
            "cluster.lease_ttl",
            self.lease_ttl.as_deref(),
            Duration::from_secs(3),
        );
        if lease_ttl < Duration::from_millis(300) {
            problems.push("cluster.lease_ttl: at least 300ms");
        }
        if member_ttl < heartbeat_every * 2 {
            problems.push("cluster.member_ttl: must be at least twice cluster.heartbeat_every");
        }
        if timeout > Duration::from_secs(1) {
            problems.push("cluster.timeout: at most 1s (calls wait this long when Redis hangs)");
        }
        let assume_replicas = problems.positive("cluster.assume_replicas", self.assume_replicas, 1);
        let key_prefix = self
            .key_prefix
            .unwrap_or_else(|| "portal-gateway".to_owned());
        if key_prefix.is_empty()
            || key_prefix.len() > 64
            || !key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            problems.push("cluster.key_prefix: 1 to 64 letters, digits, -, _, . or :");
        }
        let url = self.redis_url?;
        // The URL may carry a password: problems name the setting, never the value.
        match url::Url::parse(&url) {
            Ok(parsed) if parsed.scheme() == "redis" && parsed.host_str().is_some() => {}
            Ok(parsed) if parsed.scheme() == "rediss" => problems.push(
                "cluster.redis_url: rediss:// (TLS) is not built in; reach Redis over the mesh's mTLS with redis://",
            ),
            _ => problems.push("cluster.redis_url: must be a redis://host:port URL"),
        }
        Some(ClusterSettings {
            redis_url: SecretString::from(url),
            key_prefix,
            timeout,
            connect_timeout,
            heartbeat_every,
            member_ttl,
            lease_ttl,
            assume_replicas,
        })
    }
}
