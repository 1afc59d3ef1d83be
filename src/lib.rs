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
pub mod cluster;
pub mod config;
pub mod domain;
pub mod emulator;
pub mod error;
/// Checks that fuzz targets (`fuzz/`, `--features fuzzing`) and property tests share.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
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

#[cfg(test)]
mod tests {
    //! Checks the module boundaries ARCHITECTURE.md states, which one crate cannot make the
    //! compiler enforce: which modules may name which.

    use std::path::{Path, PathBuf};

    /// The Rust files under `src/<module>` (a folder, or `<module>.rs`).
    fn files(module: &str) -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let single = root.join(format!("{module}.rs"));
        if single.exists() {
            return vec![single];
        }
        let mut found = Vec::new();
        let mut folders = vec![root.join(module)];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("a module folder") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    found.push(path);
                }
            }
        }
        assert!(!found.is_empty(), "no files for {module}");
        found
    }

    /// Every code line (comments left out) of `module` that names one of `forbidden`.
    fn naming(module: &str, forbidden: &[&str]) -> Vec<String> {
        let mut hits = Vec::new();
        for file in files(module) {
            let text = std::fs::read_to_string(&file).expect("a source file");
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if forbidden.iter().any(|name| code.contains(name)) {
                    hits.push(format!(
                        "{}:{}: {}",
                        file.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
        hits
    }

    #[test]
    fn module_boundaries_hold() {
        let rules: [(&str, &[&str]); 6] = [
            // The adapters talk to the core only.
            ("grpc", &["workos::"]),
            // The WorkOS client knows nothing of callers, the policy, gRPC or metrics.
            (
                "workos",
                &[
                    "crate::auth",
                    "crate::grpc",
                    "crate::gateway",
                    "crate::telemetry",
                    "tonic",
                ],
            ),
            // The emulator is an independent implementation of WorkOS's contract.
            (
                "emulator",
                &[
                    "crate::workos",
                    "crate::gateway",
                    "crate::grpc",
                    "crate::auth",
                    "workos::",
                ],
            ),
            // Domain types and the core's error import nothing above them.
            (
                "domain",
                &[
                    "crate::auth",
                    "crate::workos",
                    "crate::grpc",
                    "crate::gateway",
                    "tonic",
                ],
            ),
            (
                "error",
                &[
                    "crate::auth",
                    "crate::workos",
                    "crate::grpc",
                    "crate::gateway",
                    "tonic",
                ],
            ),
            // The core never sees proto types.
            ("gateway", &["crate::proto", "proto::", "crate::grpc"]),
        ];
        let mut broken = Vec::new();
        for (module, forbidden) in rules {
            broken.extend(naming(module, forbidden));
        }
        assert!(
            broken.is_empty(),
            "boundaries crossed:\n{}",
            broken.join("\n")
        );
    }
}
