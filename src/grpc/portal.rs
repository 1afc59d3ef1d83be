//! `adminportal.v1.PortalService`.

use tonic::Request;

use super::{Envelope, RpcResult, convert};
use crate::{auth::policy::Rpc, proto};

/// `adminportal.v1.PortalService`.
#[derive(Debug, Clone)]
pub struct PortalService(Envelope);

impl PortalService {
    /// Serves portal links.
    pub fn new(envelope: Envelope) -> Self {
        Self(envelope)
    }
}

#[tonic::async_trait]
impl proto::portal_service_server::PortalService for PortalService {
    async fn generate_link(
        &self,
        request: Request<proto::GenerateLinkRequest>,
    ) -> RpcResult<proto::GenerateLinkResponse> {
        self.0
            .serve(Rpc::GenerateLink, request, async |core, call, request| {
                let loopback = core.portal_settings().allow_http_loopback;
                let request = convert::link_request(request, loopback)?;
                let link = core.generate_link(call, request).await?;
                Ok(proto::GenerateLinkResponse {
                    portal_link: Some(convert::portal_link(link)),
                })
            })
            .await
    }

    async fn revoke_links(
        &self,
        request: Request<proto::RevokeLinksRequest>,
    ) -> RpcResult<proto::RevokeLinksResponse> {
        self.0
            .serve(Rpc::RevokeLinks, request, async |core, call, request| {
                let (organization, external_user_id) = convert::revoke(request)?;
                let organization_id = core
                    .revoke_links(call, organization, external_user_id)
                    .await?;
                Ok(proto::RevokeLinksResponse {
                    organization_id: organization_id.as_str().to_owned(),
                })
            })
            .await
    }

    async fn list_intents(
        &self,
        request: Request<proto::ListIntentsRequest>,
    ) -> RpcResult<proto::ListIntentsResponse> {
        self.0
            .serve(Rpc::ListIntents, request, async |core, call, _request| {
                let intents = core.list_intents(call)?;
                Ok(proto::ListIntentsResponse {
                    intents: intents.into_iter().map(convert::intent_info).collect(),
                })
            })
            .await
    }
}
