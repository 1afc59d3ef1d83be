//! The admin port: `/metrics` in the Prometheus text format and `/healthz` for plain-HTTP
//! probes.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use super::Metrics;

/// What `/healthz` reports.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
    key_rejected: Arc<AtomicBool>,
    audit_failing: Arc<AtomicBool>,
    /// Redis cannot be reached: this replica enforces its local share.
    pub(super) local_quota: Arc<AtomicBool>,
    pub(super) replicas: Arc<std::sync::atomic::AtomicU32>,
}

impl Readiness {
    /// Marks the gateway as draining (it stays so).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the gateway is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Records whether WorkOS rejects the gateway's key.
    pub fn set_key_rejected(&self, rejected: bool) {
        self.key_rejected.store(rejected, Ordering::SeqCst);
    }

    /// Records whether the audit sink refuses writes.
    pub fn set_audit_failing(&self, failing: bool) {
        self.audit_failing.store(failing, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// Serves `/metrics` and `/healthz` on the admin port until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .with_state(AdminState { metrics, readiness });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// 200 while serving; 503 while draining, while WorkOS rejects the key, or while the audit sink
/// refuses writes.
async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned())
    } else if state.readiness.key_rejected.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "WorkOS rejects the gateway's API key\n".to_owned(),
        )
    } else if state.readiness.audit_failing.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit sink refuses writes\n".to_owned(),
        )
    } else if state.readiness.local_quota.load(Ordering::SeqCst) {
        // Still serving: Redis being down costs precision, not availability.
        let replicas = state.readiness.replicas.load(Ordering::SeqCst).max(1);
        (
            StatusCode::OK,
            format!(
                "ok; Redis cannot be reached: this replica enforces 1/{replicas} of the WorkOS limits locally\n"
            ),
        )
    } else {
        (StatusCode::OK, "ok\n".to_owned())
    }
}
