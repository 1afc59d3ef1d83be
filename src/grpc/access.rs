//! `adminportal.v1.AccessService`.

use tonic::Request;

use super::{Envelope, RpcResult, convert};
use crate::{auth::policy::Rpc, proto};

/// `adminportal.v1.AccessService`.
#[derive(Debug, Clone)]
pub struct AccessService(Envelope);

impl AccessService {
    /// Serves policy dry runs.
    pub fn new(envelope: Envelope) -> Self {
        Self(envelope)
    }
}

#[tonic::async_trait]
impl proto::access_service_server::AccessService for AccessService {
    async fn check_access(
        &self,
        request: Request<proto::CheckAccessRequest>,
    ) -> RpcResult<proto::CheckAccessResponse> {
        self.0
            .serve(Rpc::CheckAccess, request, async |core, call, request| {
                let loopback = core.portal_settings().allow_http_loopback;
                let check = convert::check_access(request, loopback)?;
                let answer = core.check_access(call, check).await?;
                Ok(proto::CheckAccessResponse {
                    allowed: answer.allowed,
                    identity: answer.identity,
                    rule: answer.rule,
                    reason: answer.reason,
                    explanation: answer.explanation,
                })
            })
            .await
    }
}
