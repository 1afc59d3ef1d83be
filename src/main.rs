//! The `portal-gateway` binary: parses the command line, loads configuration, sets up logging,
//! and hands everything else to the library.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use portal_gateway::{Config, config, emulator};
use secrecy::SecretString;
use tokio::net::TcpListener;

/// Exit code for a configuration the gateway refuses (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "portal-gateway",
    version,
    about = "A gRPC gateway for WorkOS Admin Portal links and Organizations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway and an embedded WorkOS emulator together, for development.
    Dev {
        /// Where the gateway listens (port 0 picks a free port) [default: 127.0.0.1:50051, or a
        /// free port when that one is busy].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the embedded WorkOS emulator listens [default: 127.0.0.1:4100, or a free port
        /// when that one is busy].
        #[arg(long)]
        emulator_listen: Option<SocketAddr>,
        /// Where `/metrics` and `/healthz` are served [default: 127.0.0.1:9090, or a free port
        /// when that one is busy].
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Run the gateway against WorkOS (production). Reads WORKOS_API_KEY and WORKOS_BASE_URL.
    Serve {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Overrides the file's `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run only the WorkOS emulator, for any WorkOS SDK to talk to.
    Emulator {
        /// Where the emulator listens (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:4100")]
        listen: SocketAddr,
        /// The API key the emulator accepts.
        #[arg(long, default_value = emulator::DEFAULT_API_KEY)]
        api_key: String,
        /// Seed for reproducible ids and tokens.
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(cli.command, Command::Serve { .. });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portal-gateway: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = init_logging(json_logs);
        survive_hangup();
        match cli.command {
            Command::Dev {
                listen,
                emulator_listen,
                admin_listen,
            } => dev(listen, emulator_listen, admin_listen).await,
            Command::Serve { config, listen } => serve(config, listen).await,
            Command::Emulator {
                listen,
                api_key,
                seed,
            } => run_emulator(listen, api_key, seed).await,
        }
    })
}

/// Installs logging (and, with the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, OTLP
/// trace export). Runs inside the runtime; the returned guard flushes the exporter on drop.
fn init_logging(json: bool) -> Option<Box<dyn std::any::Any>> {
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or log pipelines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(portal_gateway::telemetry::LogWriter)
        .with_ansi(ansi);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.compact().boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    if let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        match portal_gateway::telemetry::otlp::layer(&endpoint) {
            Ok((layer, guard)) => {
                registry.with(layer).init();
                return Some(Box::new(guard));
            }
            Err(problem) => eprintln!("portal-gateway: {problem}; exporting no traces"),
        }
    }
    registry.init();
    None
}

/// Prints a line for people and scripts (addresses, ready markers) on stdout.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, ExitCode> {
    TcpListener::bind(addr).await.map_err(|error| {
        eprintln!("portal-gateway: cannot listen for the {what} on {addr}: {error}");
        ExitCode::FAILURE
    })
}

/// Binds `asked` when given (and fails if it cannot), else `default`, falling back to a free port
/// when the default one is busy (9090, say, is also Prometheus's), so `dev` always starts.
async fn bind_or_free(
    what: &str,
    asked: Option<SocketAddr>,
    default: &str,
) -> Result<TcpListener, ExitCode> {
    if let Some(addr) = asked {
        return bind(what, addr).await;
    }
    let default: SocketAddr = default.parse().map_err(|_| ExitCode::FAILURE)?;
    match TcpListener::bind(default).await {
        Ok(listener) => Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            let free = SocketAddr::new(default.ip(), 0);
            let listener = bind(what, free).await?;
            say(&format!(
                "{default} is busy: the {what} listens on {} instead",
                local_addr(&listener)?
            ));
            Ok(listener)
        }
        Err(error) => {
            eprintln!("portal-gateway: cannot listen for the {what} on {default}: {error}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ExitCode> {
    listener.local_addr().map_err(|error| {
        eprintln!("portal-gateway: cannot read the bound address: {error}");
        ExitCode::FAILURE
    })
}

async fn dev(
    listen: Option<SocketAddr>,
    emulator_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> ExitCode {
    match dev_inner(listen, emulator_listen, admin_listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

async fn dev_inner(
    listen: Option<SocketAddr>,
    emulator_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> Result<(), ExitCode> {
    let emulator_listener =
        bind_or_free("WorkOS emulator", emulator_listen, "127.0.0.1:4100").await?;
    let emulator_addr = local_addr(&emulator_listener)?;
    let gateway_listener = bind_or_free("gateway", listen, config::DEFAULT_LISTEN).await?;
    let gateway_addr = local_addr(&gateway_listener)?;
    let admin_listener = bind_or_free("admin port", admin_listen, "127.0.0.1:9090").await?;
    let admin_addr = local_addr(&admin_listener)?;
    let origin = emulator::origin_of(emulator_addr);
    let (stop_emulator, emulator_stopped) = tokio::sync::oneshot::channel::<()>();
    let emulator_task = tokio::spawn(emulator::serve(
        emulator_listener,
        emulator::Options::default(),
        async {
            let _ = emulator_stopped.await;
        },
    ));
    let emulator_url = url::Url::parse(&origin).map_err(|_| ExitCode::FAILURE)?;
    let config = Config::development(
        gateway_addr,
        emulator_url,
        SecretString::from(emulator::DEFAULT_API_KEY),
    );
    say(&format!(
        "WorkOS emulator listening on {origin} (API key {})",
        emulator::DEFAULT_API_KEY
    ));
    say(&format!(
        "portal-gateway listening on {gateway_addr} (development mode: links are emulator links, not WorkOS links)"
    ));
    say("Caller identity for development: -H 'authorization: Bearer dev'");
    say("Try:");
    say(&format!(
        "  grpcurl -plaintext -H 'authorization: Bearer dev' -d '{{\"external_id\":\"acme\",\"name\":\"Acme Inc\"}}' {gateway_addr} adminportal.v1.OrganizationService/EnsureOrganization"
    ));
    say(&format!(
        "  grpcurl -plaintext -H 'authorization: Bearer dev' -d '{{\"external_id\":\"acme\",\"intent\":\"INTENT_SSO\"}}' {gateway_addr} adminportal.v1.PortalService/GenerateLink"
    ));
    say(&format!(
        "Metrics on http://{admin_addr}/metrics, plain-HTTP health on http://{admin_addr}/healthz"
    ));
    let result =
        portal_gateway::run_with_admin(gateway_listener, admin_listener, config, shutdown_signal())
            .await;
    let _ = stop_emulator.send(());
    let _ = emulator_task.await;
    result.map_err(|error| {
        tracing::error!(error = ?error, "gateway failed");
        ExitCode::FAILURE
    })
}

async fn serve(path: PathBuf, listen: Option<SocketAddr>) -> ExitCode {
    let mut config = match Config::load_file(&path, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            for problem in &error.problems {
                eprintln!("portal-gateway: {problem}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let listener = match bind("gateway", config.listen).await {
        Ok(listener) => listener,
        Err(code) => return code,
    };
    match local_addr(&listener) {
        Ok(addr) => say(&format!("portal-gateway listening on {addr}")),
        Err(code) => return code,
    }
    let result = match config.admin_listen {
        None => portal_gateway::run(listener, config, shutdown_signal()).await,
        Some(addr) => {
            let admin = match bind("admin port", addr).await {
                Ok(admin) => admin,
                Err(code) => return code,
            };
            match local_addr(&admin) {
                Ok(addr) => say(&format!("metrics and plain-HTTP health on http://{addr}")),
                Err(code) => return code,
            }
            portal_gateway::run_with_admin(listener, admin, config, shutdown_signal()).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = ?error, "gateway failed");
            ExitCode::FAILURE
        }
    }
}

async fn run_emulator(listen: SocketAddr, api_key: String, seed: Option<u64>) -> ExitCode {
    let listener = match bind("WorkOS emulator", listen).await {
        Ok(listener) => listener,
        Err(code) => return code,
    };
    match local_addr(&listener) {
        Ok(addr) => say(&format!(
            "WorkOS emulator listening on {}",
            emulator::origin_of(addr)
        )),
        Err(code) => return code,
    }
    match emulator::serve(
        listener,
        emulator::Options { api_key, seed },
        shutdown_signal(),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portal-gateway: emulator failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP reloads the policy file in `serve` (the server listens for it itself). Its default
/// action would end the process, so every command takes it over: without a policy file, and in
/// `dev` and `emulator`, it only leaves a log line.
fn survive_hangup() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::info!("SIGHUP: a policy file, when one is configured, is reloaded");
                }
            });
        }
        Err(error) => tracing::warn!(error = %error, "cannot listen for SIGHUP"),
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
