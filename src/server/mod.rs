//! Composes the gRPC server in one place: health, reflection, the two services, the request
//! timeout, and shutdown. Health and reflection need no caller identity.
//!
//! Shutdown and health are one story: when the shutdown signal fires, every health status turns
//! NOT_SERVING first (so load balancers stop sending), then the server stops accepting and lets
//! in-flight RPCs finish, for at most the configured grace period.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;

mod admission;
mod incoming;
mod settings;

pub use admission::REFUSED_REASON as UNFINISHED_REQUESTS_REFUSED_REASON;
use admission::UnfinishedRequestsLayer;
use incoming::{ConnectionCap, PausingOnExhaustion};
pub use settings::{RawServer, ServerSettings};

use crate::{
    auth::{
        PolicyStore,
        audit::Auditor,
        identity::{Authenticator, JwtVerifier},
        policy_file,
    },
    config::Config,
    gateway::Gateway,
    grpc,
    proto::{
        self, access_service_server::AccessServiceServer,
        invitation_service_server::InvitationServiceServer,
        organization_service_server::OrganizationServiceServer,
        portal_service_server::PortalServiceServer, setup_service_server::SetupServiceServer,
    },
    telemetry::{Metrics, Readiness},
    workos,
};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The WorkOS client could not be built.
    #[error("could not set up the WorkOS client")]
    Workos(#[from] workos::Error),
    /// Reflection could not load the descriptor set.
    #[error("could not build server reflection")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed, or its TLS settings were refused.
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
    /// The JWKS could not be loaded.
    #[error("cannot start JWT verification: {0}")]
    Jwks(String),
    /// The audit sink could not be opened.
    #[error("cannot open the audit sink")]
    Audit(#[source] std::io::Error),
    /// The Redis URL could not be used (never for Redis being down: that is a fallback).
    #[error("cannot set up the cluster's Redis client: {0}")]
    Cluster(String),
}

/// Concurrent streams one HTTP/2 connection may hold (advertised in SETTINGS).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// The largest header list a request may send (16 KiB, what C-core clients accept back).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// The largest request message any service decodes. The largest legitimate one (a create with
/// 100 domains and full metadata) is about 40 KB; with `server.max_unfinished_requests` streams
/// admitted at once, this bounds what half-sent bodies can hold (128 MiB at the default).
pub const MAX_REQUEST_MESSAGE_BYTES: usize = 128 * 1024;
/// How much longer than `server.request_timeout` a request may take to arrive whole.
const UNFINISHED_REQUEST_SLACK: Duration = Duration::from_secs(1);

/// The fully qualified names of the gateway's own services, as health checks name them.
/// The services that need WorkOS and the audit trail come first.
pub const SERVICE_NAMES: [&str; 5] = [
    "adminportal.v1.OrganizationService",
    "adminportal.v1.PortalService",
    "adminportal.v1.SetupService",
    "adminportal.v1.InvitationService",
    "adminportal.v1.AccessService",
];

/// Serves the gateway on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_admin(listener, None, config, shutdown).await
}

/// Like [`serve`], with `/metrics` and `/healthz` on `admin` when given.
pub async fn serve_with_admin(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::default();

    let jwt = match config.auth.jwt.clone() {
        Some(settings) => Some(JwtVerifier::new(settings).await.map_err(ServeError::Jwks)?),
        None => None,
    };
    let authenticator = Authenticator {
        tokens: config.auth.tokens.clone(),
        jwt,
        mesh: config.auth.mesh.clone(),
        client_cert_trust_domain: config
            .auth
            .tls
            .as_ref()
            .and_then(|t| t.trust_domain.clone()),
    };
    if config.policy.rules.is_empty() {
        tracing::warn!(
            "the policy has no rules: every call to the gateway's services will be denied"
        );
    }
    let policy = PolicyStore::new(config.policy.clone());
    let auditor = Auditor::open(&config.audit).map_err(ServeError::Audit)?;
    let cluster = match &config.cluster {
        None => None,
        Some(settings) => Some(
            crate::cluster::Cluster::new(
                settings.clone(),
                config.workos.quota.clone(),
                Arc::new(crate::telemetry::ClusterReport::new(
                    metrics.clone(),
                    readiness.clone(),
                )),
            )
            // A redis error names the URL's problem, not the URL.
            .map_err(|e| ServeError::Cluster(format!("{:?}", e.kind())))?,
        ),
    };
    let gateway = Gateway::connect_clustered(
        &config.workos,
        metrics.clone(),
        config.portal.clone(),
        policy.clone(),
        cluster.as_ref().map(crate::cluster::Cluster::hooks),
    )?
    .with_watch(config.setup.clone(), metrics.clone());
    let gateway = match &cluster {
        Some(cluster) => gateway
            .with_event_bus(cluster.events())
            .with_create_ledger(cluster.ledger()),
        None => gateway,
    };
    let cluster_tasks = cluster.map(|cluster| {
        let heartbeat = tokio::spawn({
            let cluster = cluster.clone();
            async move { cluster.run_heartbeat().await }
        });
        let invalidations = tokio::spawn({
            let gateway = gateway.clone();
            async move {
                cluster
                    .run_invalidations(|id| {
                        let gateway = gateway.clone();
                        async move { gateway.forget_changed_elsewhere(&id).await }
                    })
                    .await
            }
        });
        [heartbeat, invalidations]
    });
    let poller = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.run_setup_poller().await }
    });
    let watches = gateway.clone();
    let key_rejected = gateway.workos_key_rejected();
    let envelope = grpc::Envelope::new(
        gateway.clone(),
        authenticator,
        auditor,
        metrics.clone(),
        config.server.request_timeout,
        config.server.max_in_flight,
    );
    let reloader = config.policy_source.clone().map(|source| {
        tokio::spawn(reload_policy(
            source,
            config.policy_reload_interval,
            policy,
            metrics.clone(),
        ))
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OrganizationServiceServer<grpc::OrganizationService>>()
        .await;
    health
        .set_serving::<PortalServiceServer<grpc::PortalService>>()
        .await;
    health
        .set_serving::<SetupServiceServer<grpc::SetupService>>()
        .await;
    health
        .set_serving::<InvitationServiceServer<grpc::InvitationService>>()
        .await;
    health
        .set_serving::<AccessServiceServer<grpc::AccessService>>()
        .await;

    // The google.rpc error details are registered too, so grpcurl and other reflection clients
    // can decode ErrorInfo, BadRequest and RetryInfo. grpcurl 1.8 speaks only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let draining = Arc::new(AtomicBool::new(false));
    let summaries = tokio::spawn({
        let envelope = envelope.clone();
        let every = config.audit_summary_every;
        async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                envelope.write_unauthenticated_summary();
            }
        }
    });
    let final_summary = envelope.clone();
    let key_watch = tokio::spawn(report_health(
        key_rejected,
        envelope.audit_failing(),
        health.clone(),
        draining.clone(),
        readiness.clone(),
        gateway,
        envelope.clone(),
    ));
    let grace = config.server.shutdown_grace;
    let drain_delay = config.server.drain_delay;
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let reporter = health.clone();
    let signal_readiness = readiness.clone();
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(admin) = admin {
        let stopped = async {
            let _ = admin_stopped.await;
        };
        tokio::spawn(crate::telemetry::serve_admin(
            admin,
            metrics.clone(),
            readiness.clone(),
            stopped,
        ));
    }
    let signal = async move {
        shutdown.await;
        draining.store(true, Ordering::SeqCst);
        signal_readiness.set_draining();
        tracing::info!(drain_delay = ?drain_delay, "shutting down: health is NOT_SERVING; still serving during the drain delay");
        for name in std::iter::once("").chain(SERVICE_NAMES) {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        // Keep accepting while load balancers and meshes notice NOT_SERVING, then stop.
        tokio::time::sleep(drain_delay).await;
        tracing::info!(grace = ?grace, "no longer accepting; finishing in-flight calls and ending setup watches");
        // Watches would hold their connections open for ever: end them with UNAVAILABLE, which
        // watchers resume from (on another replica).
        watches.close_watches();
        let _ = draining_tx.send(());
    };

    // Bounded per connection, per request and server-wide: no client can hold unbounded
    // streams, headers or half-sent bodies. Deadlines start only once a request is decoded, so
    // the outer timeout (longer than any deadline the envelope enforces) is what ends a body that
    // never finishes; tonic answers that with CANCELLED. Before that, half-sent requests past
    // `max_unfinished_requests` are refused as they arrive (the first layer, so a refusal costs
    // nothing else).
    let mut builder = Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_connection_age(config.server.max_connection_age)
        .max_connection_age_grace(config.server.max_connection_age_grace)
        .timeout(config.server.request_timeout + UNFINISHED_REQUEST_SLACK)
        .layer(UnfinishedRequestsLayer::new(
            config.server.max_unfinished_requests,
            metrics.clone(),
        ))
        .layer(tower::util::MapResponseLayer::new(
            grpc::decode_failures_are_invalid_arguments,
        ));
    if let Some(tls) = &config.auth.tls {
        use secrecy::ExposeSecret;
        let identity =
            tonic::transport::Identity::from_pem(&tls.cert_pem, tls.key_pem.expose_secret());
        let mut tls_config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &tls.client_ca_pem {
            tls_config = tls_config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder.tls_config(tls_config)?;
    }
    let server = builder
        .add_service(health_service.max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES))
        .add_service(reflection_v1.max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES))
        .add_service(reflection_v1alpha.max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES))
        .add_service(
            OrganizationServiceServer::new(grpc::OrganizationService::new(envelope.clone()))
                .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES),
        )
        .add_service(
            PortalServiceServer::new(grpc::PortalService::new(envelope.clone()))
                .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES),
        )
        .add_service(
            SetupServiceServer::new(grpc::SetupService::new(envelope.clone()))
                .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES),
        )
        .add_service(
            InvitationServiceServer::new(grpc::InvitationService::new(envelope.clone()))
                .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES),
        )
        .add_service(
            AccessServiceServer::new(grpc::AccessService::new(envelope))
                .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(
            PausingOnExhaustion::new(ConnectionCap::new(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                config.server.max_connections,
            )),
            signal,
        );
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async {
            if draining_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(grace = ?grace, "grace period over; exiting with calls still in flight");
        }
    }
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    key_watch.abort();
    summaries.abort();
    poller.abort();
    for task in cluster_tasks.into_iter().flatten() {
        task.abort();
    }
    final_summary.write_unauthenticated_summary();
    let _ = admin_stop.send(());
    tracing::info!("gateway stopped");
    Ok(())
}

/// The first key probe after WorkOS rejects the key, and the longest wait between probes.
const KEY_PROBE_FIRST: Duration = Duration::from_secs(1);
const KEY_PROBE_MAX: Duration = Duration::from_secs(60);
/// How often the audit sink is checked while it refuses writes.
const AUDIT_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Reports NOT_SERVING for the services that need WorkOS and the audit trail while WorkOS
/// rejects the gateway's key (a configuration error no retry will fix) or the audit sink refuses
/// writes (no link or change may leave unrecorded), and SERVING again once both work. While
/// either is broken it is probed (the key with backoff, through the quota like any call; the
/// sink with a check record), so a replica that balancers took out of rotation comes back
/// without traffic. WorkOS outages do not change health: the breaker answers fast, cached reads
/// and the policy still work, and draining every replica at once would turn a partial outage
/// into a full one.
async fn report_health(
    mut key_rejected: tokio::sync::watch::Receiver<bool>,
    mut audit_failing: tokio::sync::watch::Receiver<bool>,
    health: tonic_health::server::HealthReporter,
    draining: Arc<AtomicBool>,
    readiness: Readiness,
    gateway: Gateway,
    envelope: grpc::Envelope,
) {
    let mut reported = (false, false);
    let mut backoff = KEY_PROBE_FIRST;
    loop {
        let state = (
            *key_rejected.borrow_and_update(),
            *audit_failing.borrow_and_update(),
        );
        readiness.set_key_rejected(state.0);
        readiness.set_audit_failing(state.1);
        if draining.load(Ordering::SeqCst) {
            return;
        }
        if state != reported {
            if state.0 != reported.0 {
                if state.0 {
                    tracing::error!("WorkOS rejects the gateway's API key; probing it");
                } else {
                    tracing::info!("WorkOS accepts the gateway's API key again");
                }
            }
            if state.1 != reported.1 {
                if state.1 {
                    tracing::error!("the audit sink refuses writes; results are withheld");
                } else {
                    tracing::info!("the audit sink takes writes again");
                }
            }
            let status = if state.0 || state.1 {
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            };
            for name in &SERVICE_NAMES[..4] {
                health.set_service_status(*name, status).await;
            }
            reported = state;
        }
        if !state.0 {
            backoff = KEY_PROBE_FIRST;
        }
        let key_probe = async {
            if state.0 {
                tokio::time::sleep(backoff).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let audit_check = async {
            if state.1 {
                tokio::time::sleep(AUDIT_CHECK_EVERY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            changed = key_rejected.changed() => if changed.is_err() { return },
            changed = audit_failing.changed() => if changed.is_err() { return },
            () = key_probe => {
                // Its answer comes back through the watch: a success clears the rejection.
                if !gateway.probe_workos().await {
                    backoff = (backoff * 2).min(KEY_PROBE_MAX);
                }
            }
            () = audit_check => {
                envelope.check_audit_sink();
            }
        }
    }
}

/// Reloads the policy when its file changes (checked every `interval`) or on SIGHUP. A policy
/// with mistakes is refused, each mistake logged, and the one in force stays.
async fn reload_policy(
    source: policy_file::PolicySource,
    interval: std::time::Duration,
    store: PolicyStore,
    metrics: Arc<Metrics>,
) {
    // The time and the length: a write that ends within the clock tick of the one before it
    // still changes the length, so a file seen half-written is read again once whole.
    let modified = |path: &std::path::Path| {
        std::fs::metadata(path)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok()
    };
    let mut last_seen = modified(&source.path);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup_signal = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_signal = std::future::pending::<Option<()>>();
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            _ = hangup_signal => true,
        };
        let now = modified(&source.path);
        if !forced && now == last_seen {
            continue;
        }
        last_seen = now;
        match policy_file::read_policy(&source) {
            Ok((policy, _)) => {
                let rules = policy.rules.len();
                store.replace(policy);
                metrics.policy_reload(true);
                tracing::info!(path = %source.path.display(), rules, "policy reloaded");
            }
            Err(error) => {
                metrics.policy_reload(false);
                for problem in &error.problems {
                    tracing::error!(path = %source.path.display(), problem = %problem, "policy refused; the previous policy stays in force");
                }
            }
        }
    }
}
