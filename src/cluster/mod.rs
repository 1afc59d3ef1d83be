//! Replicas sharing one WorkOS key over Redis (`[cluster] redis_url`): the quota of all replicas
//! together (one atomic Lua script), who is alive (a heartbeat each), and cache invalidation
//! (pub/sub). Unset, the gateway is one replica, as without this module.
//!
//! Redis is help, not a dependency: every command has a short timeout, and while Redis cannot be
//! reached each replica falls back to its local share (the limits divided by the last known
//! number of live replicas), says so once in the log, in `/healthz` and in metrics, and goes back
//! to the shared quota when Redis answers again. No call fails or waits because Redis is down.

mod creates;
mod events;
mod settings;

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::time::Instant;

pub use settings::{ClusterSettings, RawCluster};

use crate::workos::{
    self, ChangeFeed, QuotaSettings,
    quota::{QuotaExceeded, QuotaScope, SharedQuota, SharedVerdict},
};

/// What the cluster reports for metrics and health. Every method does nothing by default.
pub trait ClusterObserve: Send + Sync + std::fmt::Debug {
    /// Whether the shared quota is in force (false: the local share).
    fn shared(&self, _shared: bool) {}
    /// The live replica count, as last heard.
    fn replicas(&self, _replicas: u32) {}
    /// An organization changed on another replica and left this one's cache.
    fn invalidated(&self) {}
}

impl ClusterObserve for () {}

/// How long a replica that failed to reach Redis uses its local share before trying again, so a
/// Redis outage costs calls nothing, not one timeout each.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// This replica's place in the cluster. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ClusterSettings,
    quota: QuotaSettings,
    client: redis::Client,
    connection: ConnectionManager,
    replica_id: String,
    replicas: AtomicU32,
    shared: AtomicBool,
    /// While Redis is failing: when to try it again.
    retry_at: Mutex<Option<Instant>>,
    quota_script: redis::Script,
    heartbeat_script: redis::Script,
    observe: Arc<dyn ClusterObserve>,
    /// The setup events reader's own connection (it blocks on the stream).
    reader: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Cluster {
    /// Joins the cluster. Never fails for Redis being down: the connection is made lazily and
    /// remade by itself.
    pub fn new(
        settings: ClusterSettings,
        quota: QuotaSettings,
        observe: Arc<dyn ClusterObserve>,
    ) -> Result<Self, redis::RedisError> {
        use secrecy::ExposeSecret as _;
        let client = redis::Client::open(settings.redis_url.expose_secret())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                quota,
                client,
                connection,
                replica_id: crate::domain::random_uuid(),
                replicas: AtomicU32::new(1),
                shared: AtomicBool::new(true),
                retry_at: Mutex::new(None),
                quota_script: redis::Script::new(include_str!("quota.lua")),
                heartbeat_script: redis::Script::new(HEARTBEAT),
                observe,
                reader: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The setup events bus the gateway's one poller writes and every replica reads.
    pub fn events(&self) -> Arc<dyn crate::gateway::EventBus> {
        Arc::new(self.clone())
    }

    /// The hooks the WorkOS client uses: the shared quota and the change feed.
    pub fn hooks(&self) -> workos::ClusterHooks {
        workos::ClusterHooks {
            quota: Arc::new(self.clone()),
            changes: Arc::new(self.clone()),
        }
    }

    /// Whether the shared quota is in force (false while Redis cannot be reached).
    pub fn is_shared(&self) -> bool {
        self.inner.shared.load(Ordering::SeqCst)
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.settings.key_prefix)
    }

    /// Whether to ask Redis now, or stay on the local share a little longer.
    /// While Redis is failing, one call at a time probes it (the first after each retry
    /// interval claims the probe); every other call goes straight to the local share.
    fn should_try(&self) -> bool {
        let mut retry_at = self
            .inner
            .retry_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *retry_at {
            None => true,
            Some(at) if Instant::now() >= at => {
                *retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                true
            }
            Some(_) => false,
        }
    }

    /// Runs a Redis command under the cluster's timeout, whatever the client does meanwhile
    /// (reconnecting, handshaking): a hung Redis costs a call at most `timeout`.
    async fn bounded<T>(
        &self,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.inner.settings.timeout, command).await {
            Ok(Ok(value)) => Some(value),
            _ => None,
        }
    }

    /// The live count to divide the limits by when Redis is out of reach: the last heard, and
    /// never fewer than `assume_replicas` (a replica that never reached Redis knows no better).
    fn fallback_replicas(&self) -> u32 {
        self.inner
            .replicas
            .load(Ordering::SeqCst)
            .max(self.inner.settings.assume_replicas)
            .max(1)
    }

    /// Notes a Redis answer or failure; logs and reports only changes.
    fn note(&self, ok: bool) {
        *self
            .inner
            .retry_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            (!ok).then(|| Instant::now() + RETRY_AFTER_FAILURE);
        let was = self.inner.shared.swap(ok, Ordering::SeqCst);
        if was != ok {
            let replicas = self.replicas();
            if ok {
                tracing::info!(
                    replicas,
                    "Redis answers again: back to the shared WorkOS quota"
                );
            } else {
                tracing::warn!(
                    replicas,
                    "Redis cannot be reached: each replica now enforces 1/{replicas} of the WorkOS limits locally"
                );
            }
            self.inner.observe.shared(ok);
        }
    }

    /// Keeps this replica's heartbeat and the live count fresh, until the task is dropped.
    pub async fn run_heartbeat(&self) {
        let mut ticker = tokio::time::interval(self.inner.settings.heartbeat_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let mut connection = self.inner.connection.clone();
            let answer: Result<u32, _> = self
                .inner
                .heartbeat_script
                .key(self.key("replicas"))
                .arg(&self.inner.replica_id)
                .arg(self.inner.settings.member_ttl.as_millis() as u64)
                .invoke_async(&mut connection)
                .await;
            match answer {
                Ok(live) => {
                    let live = live.max(1);
                    if self.inner.replicas.swap(live, Ordering::SeqCst) != live {
                        self.inner.observe.replicas(live);
                    }
                    self.note(true);
                }
                Err(_) => self.note(false),
            }
        }
    }

    /// Hears of organizations changed on other replicas and calls `forget` for each, until the
    /// task is dropped. Reconnects by itself.
    pub async fn run_invalidations<F, Fut>(&self, forget: F)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use futures_util::StreamExt as _;
        let channel = self.key("organizations");
        loop {
            let subscribed = async {
                let mut pubsub = self.inner.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub =
                tokio::time::timeout(self.inner.settings.connect_timeout * 2, subscribed).await;
            let Ok(Ok(mut pubsub)) = pubsub else {
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                continue;
            };
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                // `<replica id> <organization id>`: this replica's own changes are already
                // out of its cache.
                if let Some((from, organization_id)) = payload.split_once(' ')
                    && from != self.inner.replica_id
                {
                    forget(organization_id.to_owned()).await;
                    self.inner.observe.invalidated();
                }
            }
            tokio::time::sleep(RETRY_AFTER_FAILURE).await;
        }
    }
}

/// Records the heartbeat (scored with Redis's clock, in ms), forgets replicas silent for longer
/// than the TTL, and returns how many are live.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
";

impl SharedQuota for Cluster {
    fn acquire(
        &self,
        caller: Arc<str>,
        caller_per_minute: Option<u32>,
        delete: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = SharedVerdict> + Send>> {
        let cluster = self.clone();
        Box::pin(async move {
            if !cluster.should_try() {
                return None;
            }
            let quota = &cluster.inner.quota;
            let mut connection = cluster.inner.connection.clone();
            let mut invocation = cluster.inner.quota_script.key(cluster.key("quota:general"));
            invocation
                .key(cluster.key("quota:deletes"))
                .key(cluster.key(&format!("quota:caller:{caller}")))
                .key(cluster.key(&format!("quota:share:{caller}")))
                .key(cluster.key("quota:waiting"))
                .arg(&*caller)
                .arg(quota.requests_per_minute)
                .arg(quota.burst)
                .arg(u8::from(delete))
                .arg(quota.deletes_per_minute)
                .arg(caller_per_minute.unwrap_or(0));
            let Some(answer) = cluster
                .bounded(invocation.invoke_async::<Vec<redis::Value>>(&mut connection))
                .await
            else {
                cluster.note(false);
                return None;
            };
            cluster.note(true);
            Some(verdict(&answer, &caller))
        })
    }

    fn replicas(&self) -> u32 {
        self.fallback_replicas()
    }
}

/// Reads the script's answer.
fn verdict(answer: &[redis::Value], caller: &Arc<str>) -> Result<(), QuotaExceeded> {
    use redis::Value;
    let number = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => *n,
        _ => 0,
    };
    if number(answer.first()) == 0 {
        return Ok(());
    }
    let scope = match answer.get(1) {
        Some(Value::BulkString(bytes)) => bytes.as_slice(),
        Some(Value::SimpleString(text)) => text.as_bytes(),
        _ => b"workos",
    };
    let scope = match scope {
        b"caller" => QuotaScope::Caller(caller.clone()),
        b"fair_share" => QuotaScope::FairShare(caller.clone()),
        b"workos_deletes" => QuotaScope::WorkosDeletes,
        _ => QuotaScope::Workos,
    };
    let micros = u64::try_from(number(answer.get(2))).unwrap_or(0);
    Err(QuotaExceeded {
        scope,
        retry_after: Duration::from_micros(micros),
    })
}

impl ChangeFeed for Cluster {
    fn organization_changed(&self, organization_id: &str) {
        // Always tried (it is off the call path): a moment of Redis trouble must not leave the
        // others' caches stale for their whole TTL.
        let cluster = self.clone();
        let payload = format!("{} {organization_id}", self.inner.replica_id);
        tokio::spawn(async move {
            let mut connection = cluster.inner.connection.clone();
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(cluster.key("organizations")).arg(payload);
            if cluster
                .bounded(publish.query_async::<i64>(&mut connection))
                .await
                .is_none()
            {
                tracing::warn!(
                    "could not tell the other replicas of a changed organization; their caches hold it until the TTL"
                );
            }
        });
    }
}
