//! Composes the gRPC server in one place: health, reflection, the two services, the request
//! timeout, and shutdown. Health and reflection need no caller identity.
//!
//! Shutdown and health are one story: when the shutdown signal fires, every health status turns
//! NOT_SERVING first (so load balancers stop sending), then the server stops accepting and lets
//! in-flight RPCs finish, for at most the configured grace period.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;

use crate::{
    config::Config,
    gateway::Gateway,
    grpc,
    proto::{
        self, organization_service_server::OrganizationServiceServer,
        portal_service_server::PortalServiceServer,
    },
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
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// The fully qualified names of the gateway's own services, as health checks name them.
pub const SERVICE_NAMES: [&str; 2] = [
    "adminportal.v1.OrganizationService",
    "adminportal.v1.PortalService",
];

/// Serves the gateway on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let workos = workos::Client::new(&config.workos)?;
    let gateway = Gateway::new(workos, config.portal.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OrganizationServiceServer<grpc::OrganizationService>>()
        .await;
    health
        .set_serving::<PortalServiceServer<grpc::PortalService>>()
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

    let grace = config.server.shutdown_grace;
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let reporter = health.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health is NOT_SERVING, draining in-flight calls");
        for name in std::iter::once("").chain(SERVICE_NAMES) {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let _ = draining_tx.send(());
    };

    let server = Server::builder()
        .timeout(config.server.request_timeout)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(OrganizationServiceServer::new(
            grpc::OrganizationService::new(gateway.clone()),
        ))
        .add_service(PortalServiceServer::new(grpc::PortalService::new(gateway)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal);
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
    tracing::info!("gateway stopped");
    Ok(())
}
