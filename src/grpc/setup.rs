//! `adminportal.v1.SetupService`.

use std::pin::Pin;

use futures_util::{Stream, stream};
use tonic::{Request, Status};

use super::{Envelope, RpcResult, convert, status};
use crate::{auth::policy::Rpc, gateway::Watch, proto};

/// `adminportal.v1.SetupService`.
#[derive(Debug, Clone)]
pub struct SetupService(Envelope);

impl SetupService {
    /// Serves setup status and watches.
    pub fn new(envelope: Envelope) -> Self {
        Self(envelope)
    }
}

/// A WatchSetup stream: the watch's messages until it ends with a status the caller resumes
/// after.
type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchSetupResponse, Status>> + Send>>;

fn stream_of(watch: Watch) -> WatchStream {
    Box::pin(stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        match watch.next().await {
            Ok(message) => Some((Ok(convert::watch_message(message)), Some(watch))),
            Err(error) => Some((Err(status::from_error(error)), None)),
        }
    }))
}

#[tonic::async_trait]
impl proto::setup_service_server::SetupService for SetupService {
    async fn get_setup_status(
        &self,
        request: Request<proto::GetSetupStatusRequest>,
    ) -> RpcResult<proto::GetSetupStatusResponse> {
        self.0
            .serve(Rpc::GetSetupStatus, request, async |core, call, request| {
                let (organization, intents) = convert::get_setup_status(request)?;
                let status = core.get_setup_status(call, organization, intents).await?;
                Ok(proto::GetSetupStatusResponse {
                    status: Some(convert::setup_status(&status)),
                })
            })
            .await
    }

    type WatchSetupStream = WatchStream;

    async fn watch_setup(
        &self,
        request: Request<proto::WatchSetupRequest>,
    ) -> RpcResult<Self::WatchSetupStream> {
        self.0
            .serve(Rpc::WatchSetup, request, async |core, call, request| {
                let (organization, intents, resume) = convert::watch_setup(request)?;
                let watch = core
                    .watch_setup(call, organization, intents, resume)
                    .await?;
                Ok(stream_of(watch))
            })
            .await
    }
}
