//! Thin gRPC adapters: each RPC parses its request into domain types (`convert`), calls the core
//! (`crate::gateway`) and converts the answer back. The one `From<Error> for Status` in
//! `crate::error` runs at the trait boundary.

mod convert;

use tonic::{Request, Response, Status};

use crate::{error::Error, gateway::Gateway, proto};

/// `adminportal.v1.OrganizationService`.
#[derive(Debug, Clone)]
pub struct OrganizationService {
    gateway: Gateway,
}

impl OrganizationService {
    /// Serves organizations through `gateway`.
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }
}

/// `adminportal.v1.PortalService`.
#[derive(Debug, Clone)]
pub struct PortalService {
    gateway: Gateway,
}

impl PortalService {
    /// Serves portal links through `gateway`.
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

// === impl OrganizationService ===

#[tonic::async_trait]
impl proto::organization_service_server::OrganizationService for OrganizationService {
    async fn create_organization(
        &self,
        request: Request<proto::CreateOrganizationRequest>,
    ) -> RpcResult<proto::CreateOrganizationResponse> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn get_organization(
        &self,
        request: Request<proto::GetOrganizationRequest>,
    ) -> RpcResult<proto::GetOrganizationResponse> {
        Ok(Response::new(self.get(request.into_inner()).await?))
    }

    async fn list_organizations(
        &self,
        request: Request<proto::ListOrganizationsRequest>,
    ) -> RpcResult<proto::ListOrganizationsResponse> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    async fn update_organization(
        &self,
        request: Request<proto::UpdateOrganizationRequest>,
    ) -> RpcResult<proto::UpdateOrganizationResponse> {
        Ok(Response::new(self.update(request.into_inner()).await?))
    }

    async fn delete_organization(
        &self,
        request: Request<proto::DeleteOrganizationRequest>,
    ) -> RpcResult<proto::DeleteOrganizationResponse> {
        Ok(Response::new(self.delete(request.into_inner()).await?))
    }

    async fn ensure_organization(
        &self,
        request: Request<proto::EnsureOrganizationRequest>,
    ) -> RpcResult<proto::EnsureOrganizationResponse> {
        Ok(Response::new(self.ensure(request.into_inner()).await?))
    }
}

impl OrganizationService {
    async fn create(
        &self,
        request: proto::CreateOrganizationRequest,
    ) -> Result<proto::CreateOrganizationResponse, Error> {
        let new = convert::new_organization(request)?;
        let organization = self.gateway.create_organization(&new).await?;
        Ok(proto::CreateOrganizationResponse {
            organization: Some(convert::organization(organization)),
        })
    }

    async fn get(
        &self,
        request: proto::GetOrganizationRequest,
    ) -> Result<proto::GetOrganizationResponse, Error> {
        let organization = convert::get_organization(request)?;
        let organization = self.gateway.get_organization(&organization).await?;
        Ok(proto::GetOrganizationResponse {
            organization: Some(convert::organization(organization)),
        })
    }

    async fn list(
        &self,
        request: proto::ListOrganizationsRequest,
    ) -> Result<proto::ListOrganizationsResponse, Error> {
        let query = convert::list_query(request)?;
        let page = self.gateway.list_organizations(&query).await?;
        Ok(convert::list_response(page, &query))
    }

    async fn update(
        &self,
        request: proto::UpdateOrganizationRequest,
    ) -> Result<proto::UpdateOrganizationResponse, Error> {
        let (id, changes) = convert::update(request)?;
        let organization = self.gateway.update_organization(&id, &changes).await?;
        Ok(proto::UpdateOrganizationResponse {
            organization: Some(convert::organization(organization)),
        })
    }

    async fn delete(
        &self,
        request: proto::DeleteOrganizationRequest,
    ) -> Result<proto::DeleteOrganizationResponse, Error> {
        let id = convert::organization_id("id", &request.id)?;
        self.gateway.delete_organization(&id).await?;
        Ok(proto::DeleteOrganizationResponse {})
    }

    async fn ensure(
        &self,
        request: proto::EnsureOrganizationRequest,
    ) -> Result<proto::EnsureOrganizationResponse, Error> {
        let new = convert::ensure_organization(request)?;
        let (organization, created) = self.gateway.ensure_organization(&new).await?;
        Ok(proto::EnsureOrganizationResponse {
            organization: Some(convert::organization(organization)),
            created,
        })
    }
}

// === impl PortalService ===

#[tonic::async_trait]
impl proto::portal_service_server::PortalService for PortalService {
    async fn generate_link(
        &self,
        request: Request<proto::GenerateLinkRequest>,
    ) -> RpcResult<proto::GenerateLinkResponse> {
        Ok(Response::new(self.generate(request.into_inner()).await?))
    }

    async fn revoke_links(
        &self,
        request: Request<proto::RevokeLinksRequest>,
    ) -> RpcResult<proto::RevokeLinksResponse> {
        Ok(Response::new(self.revoke(request.into_inner()).await?))
    }

    async fn list_intents(
        &self,
        _request: Request<proto::ListIntentsRequest>,
    ) -> RpcResult<proto::ListIntentsResponse> {
        Ok(Response::new(self.intents()))
    }
}

impl PortalService {
    async fn generate(
        &self,
        request: proto::GenerateLinkRequest,
    ) -> Result<proto::GenerateLinkResponse, Error> {
        let allow_http_loopback = self.gateway.portal_settings().allow_http_loopback;
        let link_request = convert::link_request(request, allow_http_loopback)?;
        let link = self.gateway.generate_link(&link_request).await?;
        Ok(proto::GenerateLinkResponse {
            portal_link: Some(convert::portal_link(link)),
        })
    }

    async fn revoke(
        &self,
        request: proto::RevokeLinksRequest,
    ) -> Result<proto::RevokeLinksResponse, Error> {
        let (organization, external_user_id) = convert::revoke(request)?;
        let id = self
            .gateway
            .revoke_links(&organization, &external_user_id)
            .await?;
        Ok(proto::RevokeLinksResponse {
            organization_id: id.as_str().to_owned(),
        })
    }

    fn intents(&self) -> proto::ListIntentsResponse {
        let intents = self
            .gateway
            .intents()
            .into_iter()
            .map(|info| proto::IntentInfo {
                intent: convert::intent_to_proto(info.intent) as i32,
                workos_name: info.intent.workos_name().to_owned(),
                description: info.intent.description().to_owned(),
                default_return_url: info.return_url.unwrap_or_default(),
                default_success_url: info.success_url.unwrap_or_default(),
            })
            .collect();
        proto::ListIntentsResponse { intents }
    }
}
