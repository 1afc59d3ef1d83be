//! A WorkOS-compatible HTTP server for development, CI and tests: Organizations, Organization
//! Domains, the Admin Portal, IT contacts with their e-mailed invitations (delivered to an
//! outbox the control API shows), and what a portal setup leaves behind (SSO connections,
//! directories, the audit log configuration and the Events API), with WorkOS's shapes, status
//! codes and errors. The portal pages are a working stand-in for the hosted Admin Portal, and a
//! control API under `/_emulator/` injects faults, reads request counts and performs any setup
//! step without a browser.
//!
//! **Invariant:** this module is an independent implementation of the WorkOS contract. It shares
//! no types with `crate::workos` (the client), so each can catch the other's mistakes.

mod api;
mod control;
mod events;
mod invites;
mod portal;
mod setup;
mod state;
mod wire;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde_json::json;
use tokio::net::TcpListener;

use state::{RequestRecord, Store};
use wire::{ApiError, JSON_UTF8, MAX_BODY_BYTES, json_response};

/// The API key the emulator accepts unless told otherwise.
pub const DEFAULT_API_KEY: &str = "sk_test_emulator";

/// How to run the emulator.
#[derive(Clone)]
pub struct Options {
    /// The API key callers must send as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Seed for ids, tokens and fault probabilities; random when `None`.
    pub seed: Option<u64>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("api_key", &"[redacted]")
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_key: DEFAULT_API_KEY.to_owned(),
            seed: None,
        }
    }
}

/// State shared by every handler. Cloning is shallow.
#[derive(Clone)]
pub(crate) struct Shared(Arc<Inner>);

pub(crate) struct Inner {
    store: Mutex<Store>,
    api_key: String,
    /// `http://host:port` of the emulator itself, for the links it mints.
    origin: String,
}

impl std::ops::Deref for Shared {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Shared {
    /// Locks the store. A panic while holding the lock cannot leave it half-changed (handlers
    /// validate before they mutate), so a poisoned lock is safe to keep using.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Builds the emulator's router. `origin` is the emulator's own `http://host:port`.
pub fn router(options: &Options, origin: String) -> Router {
    let shared = Shared(Arc::new(Inner {
        store: Mutex::new(Store::new(options.seed)),
        api_key: options.api_key.clone(),
        origin,
    }));
    let workos = Router::new()
        .route(
            "/organizations",
            post(api::create_organization).get(api::list_organizations),
        )
        .route(
            "/organizations/{id}",
            get(api::get_organization)
                .put(api::update_organization)
                .delete(api::delete_organization),
        )
        .route(
            "/organizations/external_id/{external_id}",
            get(api::get_organization_by_external_id),
        )
        .route("/organization_domains", post(api::create_domain))
        .route(
            "/organization_domains/{id}",
            get(api::get_domain).delete(api::delete_domain),
        )
        .route(
            "/organization_domains/{id}/verify",
            post(api::verify_domain),
        )
        .route("/connections", get(api::list_connections))
        .route(
            "/connections/{id}",
            get(api::get_connection).delete(api::delete_connection),
        )
        .route("/directories", get(api::list_directories))
        .route(
            "/directories/{id}",
            get(api::get_directory).delete(api::delete_directory),
        )
        .route(
            "/organizations/{id}/audit_log_configuration",
            get(api::get_audit_log_configuration),
        )
        .route(
            "/organizations/{id}/it_contacts",
            get(api::list_it_contacts).post(api::create_it_contact),
        )
        .route(
            "/organizations/{id}/it_contacts/{contact_id}",
            delete(api::delete_it_contact),
        )
        .route(
            "/organizations/{id}/it_contacts/{contact_id}/invite",
            post(api::invite_it_contact),
        )
        .route(
            "/organizations/{id}/it_contacts/{contact_id}/revoke",
            post(api::revoke_it_contact),
        )
        .route("/events", get(api::list_events))
        .route("/portal/generate_link", post(api::generate_link))
        .route("/portal/revoke_link", post(api::revoke_link))
        .route_layer(middleware::from_fn_with_state(shared.clone(), workos_layer));
    let control = Router::new()
        .route("/_emulator/reset", post(control::reset))
        .route(
            "/_emulator/faults",
            post(control::add_fault)
                .get(control::list_faults)
                .delete(control::clear_faults),
        )
        .route("/_emulator/faults/{id}", delete(control::delete_fault))
        .route("/_emulator/seed", post(control::seed))
        .route(
            "/_emulator/requests",
            get(control::requests).delete(control::clear_requests),
        )
        .route("/_emulator/clock", post(control::advance_clock))
        .route("/_emulator/idempotency", post(control::idempotency))
        .route(
            "/_emulator/outbox",
            get(control::outbox).delete(control::clear_outbox),
        )
        .route(
            "/_emulator/organizations/{id}/setup",
            post(control::setup::setup),
        );
    let pages = Router::new()
        .route("/portal/launch", get(portal::launch))
        .route("/portal/exit", get(portal::exit))
        .route("/portal/sso", post(portal::actions::configure_sso))
        .route("/portal/sso/test", post(portal::actions::test_sign_in))
        .route("/portal/dsync", post(portal::actions::connect_directory))
        .route(
            "/portal/domain_verification",
            post(portal::actions::add_domain),
        )
        .route(
            "/portal/domain_verification/verify",
            post(portal::actions::verify_domain),
        )
        .route(
            "/portal/log_streams",
            post(portal::actions::create_log_stream),
        )
        .route(
            "/portal/certificate_renewal",
            post(portal::actions::renew_certificate),
        )
        .route(
            "/portal/bring_your_own_key",
            post(portal::actions::verify_key),
        );
    workos
        .merge(control)
        .merge(pages)
        .fallback(not_implemented)
        .method_not_allowed_fallback(not_implemented)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            request_id_layer,
        ))
        .with_state(shared)
}

/// Serves the emulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let origin = origin_of(listener.local_addr()?);
    let app = router(&options, origin);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `http://addr`, with an unspecified address replaced by loopback so links are clickable.
pub fn origin_of(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// Every answer carries an `X-Request-ID`, and JSON answers WorkOS's exact content type.
async fn request_id_layer(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let request_id = shared.store().request_id();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Counts the request, applies any injected fault, then checks the API key. Like a real server,
/// it finishes what it received even when the client hangs up: a create cut off in flight is
/// made all the same.
async fn workos_layer(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    match tokio::spawn(handle(shared, request, next)).await {
        Ok(response) => response,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn handle(shared: Shared, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", request.method(), path.as_str()),
        None => format!("{} {}", request.method(), request.uri().path()),
    };
    let headers = request.headers().clone();
    let fault = {
        let mut store = shared.store();
        store.count(&route);
        store.take_fault(&route)
    };
    let response = match fault {
        None => authorized(&shared, request, next).await,
        Some(fault) => {
            if !fault.delay.is_zero() {
                tokio::time::sleep(fault.delay).await;
            }
            if fault.after_commit {
                let _committed = authorized(&shared, request, next).await;
                fault_response(
                    fault.status.unwrap_or(500),
                    fault.retry_after,
                    fault.malformed,
                )
            } else if fault.status.is_some() || fault.malformed {
                fault_response(
                    fault.status.unwrap_or(200),
                    fault.retry_after,
                    fault.malformed,
                )
            } else {
                authorized(&shared, request, next).await
            }
        }
    };
    record(&shared, route, &headers, response.status());
    response
}

async fn authorized(shared: &Shared, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(shared.api_key.as_str()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

fn fault_response(status: u16, retry_after: Option<u64>, malformed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if malformed {
        let mut response = (status, "{\"object\":\"organization\",\"id\":").into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
        response
    } else {
        let body = match status.as_u16() {
            401 => json!({ "message": "Unauthorized" }),
            429 => json!({ "message": "Too many requests.", "code": "rate_limit_exceeded" }),
            500..=599 => json!({ "message": "Internal Server Error", "code": "server_error" }),
            _ => {
                json!({ "message": "Injected by the emulator's control API.", "code": "injected_fault" })
            }
        };
        json_response(status, &body)
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn record(shared: &Shared, route: String, headers: &HeaderMap, status: StatusCode) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    shared.store().record(RequestRecord {
        route,
        status: status.as_u16(),
        idempotency_key: header("idempotency-key"),
        request_id: header("x-request-id"),
        traceparent: header("traceparent"),
        user_agent: header("user-agent"),
    });
}

/// Anything the emulator does not implement: 501 with a distinct code, counted like a route.
async fn not_implemented(State(shared): State<Shared>, request: Request) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = ApiError::not_implemented(&method, &path).into_response();
    if !path.starts_with("/_emulator/") {
        record(
            &shared,
            format!("{method} {path}"),
            request.headers(),
            response.status(),
        );
    }
    response
}
