//! What operators see: Prometheus metrics, one log line per RPC, and the ids that tie a call to
//! WorkOS's records (`x-request-id`, WorkOS's `X-Request-ID`, W3C `traceparent`).
//!
//! Metrics are served on a separate admin HTTP port with `/metrics` and `/healthz`. Caller labels
//! are a bounded set: identities the policy names; anything else is `unknown` or
//! `unauthenticated`, so a flood of made-up identities cannot explode the series count.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Latency buckets in seconds, from 0.5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Labels of an RPC count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    caller: String,
    code: &'static str,
}

/// Labels of an RPC latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcTimingLabels {
    method: &'static str,
    caller: String,
}

/// Labels of an upstream attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    route: &'static str,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

/// Every metric the gateway exports. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<RpcTimingLabels, Histogram>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_duration: Family<RouteLabels, Histogram>,
    upstream_retries: Family<RouteLabels, Counter>,
    breaker_state: Family<FamilyLabels, Gauge>,
    cache_lookups: Family<ResultLabels, Counter>,
    quota_rejections: Family<ScopeLabels, Counter>,
    in_flight: Gauge,
    unfinished_refused: Counter,
    policy_reloads: Family<ResultLabels, Counter>,
    audit_failures: Counter,
    audit_failing: Gauge,
    setup_watchers: Gauge,
    setup_poller_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    setup_polls: Family<ResultLabels, Counter>,
    setup_watch_ends: Family<ReasonLabels, Counter>,
    setup_poller_leader: Gauge,
    cluster_shared: Gauge,
    cluster_replicas: Gauge,
    cluster_invalidations: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `portal_gateway` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portal_gateway");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_duration = Family::<RpcTimingLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        let upstream_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let upstream_retries = Family::<RouteLabels, Counter>::default();
        let breaker_state = Family::<FamilyLabels, Gauge>::default();
        let cache_lookups = Family::<ResultLabels, Counter>::default();
        let quota_rejections = Family::<ScopeLabels, Counter>::default();
        let in_flight = Gauge::default();
        let unfinished_refused = Counter::default();
        registry.register(
            "unfinished_requests_refused",
            "Streams refused because server.max_unfinished_requests requests were still arriving",
            unfinished_refused.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        let audit_failures = Counter::default();
        let audit_failing = Gauge::default();
        let setup_watchers = Gauge::default();
        let setup_poller_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let setup_polls = Family::<ResultLabels, Counter>::default();
        let setup_watch_ends = Family::<ReasonLabels, Counter>::default();
        let setup_poller_leader = Gauge::default();
        registry.register(
            "setup_poller_leader",
            "1 while this replica holds the cluster's setup events poller lease",
            setup_poller_leader.clone(),
        );
        registry.register(
            "setup_watch_ends",
            "WatchSetup streams that ended with an error, by reason",
            setup_watch_ends.clone(),
        );
        let cluster_shared = Gauge::default();
        let cluster_replicas = Gauge::default();
        let cluster_invalidations = Counter::default();
        registry.register(
            "cluster_shared_quota",
            "1 while the WorkOS quota is shared with the other replicas over Redis, 0 while this replica enforces its local share",
            cluster_shared.clone(),
        );
        registry.register(
            "cluster_replicas",
            "Live replicas as last heard from Redis",
            cluster_replicas.clone(),
        );
        registry.register(
            "cluster_invalidations",
            "Organizations dropped from the cache because another replica changed them",
            cluster_invalidations.clone(),
        );
        registry.register(
            "setup_watchers",
            "Open WatchSetup streams",
            setup_watchers.clone(),
        );
        registry.register(
            "setup_poller_lag_seconds",
            "Age of the newest WorkOS event the setup poller read (0 once it is caught up)",
            setup_poller_lag.clone(),
        );
        registry.register(
            "setup_polls",
            "Setup events polls of WorkOS by result (ok, empty, error)",
            setup_polls.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit records that could not be written (each call answered UNAVAILABLE instead)",
            audit_failures.clone(),
        );
        registry.register(
            "audit_sink_failing",
            "1 while the audit sink refuses writes (the audited services are NOT_SERVING), else 0",
            audit_failing.clone(),
        );
        registry.register(
            "rpc_requests",
            "gRPC calls by method, caller and code",
            rpc_requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "gRPC call latency by method and caller",
            rpc_duration.clone(),
        );
        registry.register(
            "upstream_requests",
            "WorkOS attempts by route and HTTP status (or transport failure)",
            upstream_requests.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "WorkOS attempt latency by route",
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_retries",
            "WorkOS retries by route",
            upstream_retries.clone(),
        );
        registry.register(
            "breaker_state",
            "Circuit state by route family: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        registry.register(
            "cache_lookups",
            "Organization cache lookups by result",
            cache_lookups.clone(),
        );
        registry.register(
            "quota_rejections",
            "Calls refused by the WorkOS quota, by scope",
            quota_rejections.clone(),
        );
        registry.register(
            "in_flight_requests",
            "gRPC calls in progress",
            in_flight.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads by result",
            policy_reloads.clone(),
        );
        Self {
            registry,
            rpc_requests,
            rpc_duration,
            upstream_requests,
            upstream_duration,
            upstream_retries,
            breaker_state,
            cache_lookups,
            quota_rejections,
            in_flight,
            unfinished_refused,
            policy_reloads,
            audit_failures,
            audit_failing,
            setup_watchers,
            setup_poller_lag,
            setup_polls,
            setup_watch_ends,
            setup_poller_leader,
            cluster_shared,
            cluster_replicas,
            cluster_invalidations,
        }
    }

    /// Counts a stream refused while too many requests were still arriving.
    pub fn unfinished_request_refused(&self) {
        self.unfinished_refused.inc();
    }

    /// Counts an audit record that could not be written.
    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }

    /// Sets whether the audit sink is refusing writes.
    pub fn audit_sink_failing(&self, failing: bool) {
        self.audit_failing.set(i64::from(failing));
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("cannot encode metrics");
        }
        text
    }

    /// Counts a finished RPC. `caller` must already be a bounded label.
    pub fn rpc(&self, method: &'static str, caller: &str, code: &'static str, latency: Duration) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                method,
                caller: caller.to_owned(),
                code,
            })
            .inc();
        self.rpc_duration
            .get_or_create(&RpcTimingLabels {
                method,
                caller: caller.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Counts one WorkOS attempt.
    pub fn upstream(&self, route: &'static str, status: &str, latency: Duration) {
        self.upstream_requests
            .get_or_create(&UpstreamLabels {
                route,
                status: status.to_owned(),
            })
            .inc();
        self.upstream_duration
            .get_or_create(&RouteLabels { route })
            .observe(latency.as_secs_f64());
    }

    /// Counts a retry.
    pub fn retry(&self, route: &'static str) {
        self.upstream_retries
            .get_or_create(&RouteLabels { route })
            .inc();
    }

    /// Sets a breaker's state (0 closed, 1 open, 2 half-open).
    pub fn breaker(&self, family: &'static str, state: crate::workos::BreakerState) {
        use crate::workos::BreakerState as S;
        let value = match state {
            S::Closed => 0,
            S::Open => 1,
            S::HalfOpen => 2,
        };
        self.breaker_state
            .get_or_create(&FamilyLabels { family })
            .set(value);
    }

    /// Counts a cache lookup.
    pub fn cache(&self, hit: bool) {
        self.cache_lookups
            .get_or_create(&ResultLabels {
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// Counts a quota refusal.
    pub fn quota_rejection(&self, scope: &'static str) {
        self.quota_rejections
            .get_or_create(&ScopeLabels { scope })
            .inc();
    }

    /// Counts a policy reload.
    pub fn policy_reload(&self, ok: bool) {
        self.policy_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Marks a call in progress until the guard drops.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(self.clone())
    }
}

/// The WorkOS client reports here through its observer interface.
impl crate::workos::Observe for Metrics {
    fn upstream(&self, route: &'static str, status: &str, latency: Duration) {
        Metrics::upstream(self, route, status, latency);
    }

    fn retry(&self, route: &'static str) {
        Metrics::retry(self, route);
    }

    fn breaker(&self, family: &'static str, state: crate::workos::BreakerState) {
        Metrics::breaker(self, family, state);
    }

    fn cache(&self, hit: bool) {
        Metrics::cache(self, hit);
    }

    fn quota_refused(&self, scope: &'static str) {
        self.quota_rejection(scope);
    }
}

/// The setup watch reports here.
impl crate::gateway::WatchObserve for Metrics {
    fn watchers(&self, open: usize) {
        self.setup_watchers
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    fn poller_lag(&self, lag: Duration) {
        self.setup_poller_lag.set(lag.as_secs_f64());
    }

    fn poll(&self, outcome: &'static str) {
        self.setup_polls
            .get_or_create(&ResultLabels { result: outcome })
            .inc();
    }

    fn leading(&self, leading: bool) {
        self.setup_poller_leader.set(i64::from(leading));
    }

    fn ended(&self, reason: &'static str) {
        self.setup_watch_ends
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// The cluster reports to metrics and to `/healthz`.
#[derive(Debug)]
pub struct ClusterReport {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl ClusterReport {
    /// Reports to both.
    pub fn new(metrics: Arc<Metrics>, readiness: Readiness) -> Self {
        metrics.cluster_shared.set(1);
        metrics.cluster_replicas.set(1);
        Self { metrics, readiness }
    }
}

impl crate::cluster::ClusterObserve for ClusterReport {
    fn shared(&self, shared: bool) {
        self.metrics.cluster_shared.set(i64::from(shared));
        self.readiness.local_quota.store(!shared, Ordering::SeqCst);
    }

    fn replicas(&self, replicas: u32) {
        self.metrics.cluster_replicas.set(i64::from(replicas));
        self.readiness
            .replicas
            .store(replicas, std::sync::atomic::Ordering::SeqCst);
    }

    fn invalidated(&self) {
        self.metrics.cluster_invalidations.inc();
    }
}

/// Decrements the in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all zero.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0'))
}

/// The `traceparent` to send upstream: with OTLP export, the gateway's own span (so WorkOS's
/// side joins the trace below the gateway); otherwise the caller's, passed through unchanged.
pub fn upstream_traceparent(callers: Option<&str>) -> Option<String> {
    #[cfg(feature = "otlp")]
    if let Some(own) = otlp::current_traceparent() {
        return Some(own);
    }
    callers.map(str::to_owned)
}

// === Logs ===

/// The target of the one line logged per RPC.
pub const RPC_LOG_TARGET: &str = "portal_gateway::rpc";

/// Each RPC's log line, written in a group with those of the calls ending in the same round.
static RPC_LINES: std::sync::LazyLock<crate::lines::LineSink> =
    std::sync::LazyLock::new(|| crate::lines::LineSink::new(std::io::stderr()));

/// Where logs go (for `tracing_subscriber::fmt`): standard error. The per-RPC lines wait in a
/// group that the call writes, after its answer is decided and before it is sent (see
/// [`write_rpc_lines`]); every other line is written at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// Adds one per-RPC log line to the pending group.
#[derive(Debug)]
pub struct RpcLine;

impl std::io::Write for RpcLine {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let _ = RPC_LINES.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = tracing_subscriber::fmt::writer::EitherWriter<std::io::Stderr, RpcLine>;

    fn make_writer(&'a self) -> Self::Writer {
        tracing_subscriber::fmt::writer::EitherWriter::A(std::io::stderr())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if meta.target() == RPC_LOG_TARGET {
            tracing_subscriber::fmt::writer::EitherWriter::B(RpcLine)
        } else {
            self.make_writer()
        }
    }
}

/// Whether per-RPC log lines wait to be written.
pub fn rpc_lines_pending() -> bool {
    RPC_LINES.is_pending()
}

/// Writes the pending per-RPC log lines in one call.
pub fn write_rpc_lines() {
    if let Err(lost) = RPC_LINES.flush() {
        tracing::error!(error = %lost.error, lines = lost.lines, "cannot write log lines");
    }
}

/// OTLP trace export (the `otlp` feature): a span per RPC, joined to the caller's trace.
#[cfg(feature = "otlp")]
pub mod otlp;

mod admin;

pub use admin::{Readiness, serve_admin};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
        ] {
            assert!(!valid_traceparent(bad), "{bad:?}");
        }
    }

    #[test]
    fn metrics_encode_as_openmetrics_text() {
        let metrics = Metrics::new();
        metrics.rpc("GenerateLink", "billing", "OK", Duration::from_millis(3));
        metrics.upstream(
            "POST /portal/generate_link",
            "201",
            Duration::from_millis(2),
        );
        let text = metrics.encode();
        assert!(text.contains(r#"portal_gateway_rpc_requests_total{method="GenerateLink",caller="billing",code="OK"} 1"#), "{text}");
        assert!(
            text.contains("portal_gateway_upstream_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
