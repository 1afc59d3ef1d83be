//! portal-gateway: one place for internal services to mint WorkOS Admin Portal links and manage
//! WorkOS Organizations over gRPC, without each of them holding the WorkOS API key.
//!
//! The components, from the outside in:
//! - [`server`] composes tonic: health, reflection, the services, timeouts, shutdown.
//! - [`grpc`] adapts each RPC: proto in, [`domain`] types to the core, proto out.
//! - [`gateway`] is the core: what each RPC does, in domain types.
//! - [`workos`] is the WorkOS REST client, a tower stack over reqwest; its wire types stay
//!   private.
//! - [`error`] is the core's one error type; `grpc` maps it to `tonic::Status` in one place.
//! - [`config`] loads and validates configuration; secrets stay wrapped.
//! - [`auth`] proves callers, decides with the policy, and writes the audit trail.
//! - [`lines`] writes audit and log lines in groups, each caller waiting only for its own.
//! - [`telemetry`] holds the metrics, the admin HTTP port and the ids that follow a call.
//! - [`emulator`] is an independent WorkOS emulator for development and tests.

pub mod auth;
pub mod config;
pub mod domain;
pub mod emulator;
pub mod error;
pub mod gateway;
pub mod grpc;
pub mod lines;
pub mod proto;
pub mod server;
pub mod telemetry;
pub mod workos;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::Config;
pub use server::ServeError;

/// Runs the gateway on an already-bound listener until `shutdown` completes. The caller owns
/// the socket and the signal, so tests can bind port 0 and stop the server when they like.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    server::serve(listener, config, shutdown).await
}

/// Like [`run`], and serves `/metrics` and `/healthz` on `admin`.
pub async fn run_with_admin(
    listener: TcpListener,
    admin: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    server::serve_with_admin(listener, Some(admin), config, shutdown).await
}
