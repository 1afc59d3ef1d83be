//! `adminportal.v1.OrganizationService`.

use tonic::Request;

use super::{Envelope, RpcResult, convert};
use crate::{auth::policy::Rpc, proto};

/// `adminportal.v1.OrganizationService`.
#[derive(Debug, Clone)]
pub struct OrganizationService(Envelope);

impl OrganizationService {
    /// Serves organizations.
    pub fn new(envelope: Envelope) -> Self {
        Self(envelope)
    }
}

#[tonic::async_trait]
impl proto::organization_service_server::OrganizationService for OrganizationService {
    async fn create_organization(
        &self,
        request: Request<proto::CreateOrganizationRequest>,
    ) -> RpcResult<proto::CreateOrganizationResponse> {
        self.0
            .serve(
                Rpc::CreateOrganization,
                request,
                async |core, call, request| {
                    let new = convert::new_organization(request)?;
                    let organization = core.create_organization(call, new).await?;
                    Ok(proto::CreateOrganizationResponse {
                        organization: Some(convert::organization(organization)),
                    })
                },
            )
            .await
    }

    async fn get_organization(
        &self,
        request: Request<proto::GetOrganizationRequest>,
    ) -> RpcResult<proto::GetOrganizationResponse> {
        self.0
            .serve(
                Rpc::GetOrganization,
                request,
                async |core, call, request| {
                    let organization = convert::get_organization(request)?;
                    let organization = core.get_organization(call, organization).await?;
                    Ok(proto::GetOrganizationResponse {
                        organization: Some(convert::organization(organization)),
                    })
                },
            )
            .await
    }

    async fn list_organizations(
        &self,
        request: Request<proto::ListOrganizationsRequest>,
    ) -> RpcResult<proto::ListOrganizationsResponse> {
        self.0
            .serve(
                Rpc::ListOrganizations,
                request,
                async |core, call, request| {
                    let query = convert::list_query(request)?;
                    let page = core.list_organizations(call, &query).await?;
                    Ok(convert::list_response(page, &query))
                },
            )
            .await
    }

    async fn update_organization(
        &self,
        request: Request<proto::UpdateOrganizationRequest>,
    ) -> RpcResult<proto::UpdateOrganizationResponse> {
        self.0
            .serve(
                Rpc::UpdateOrganization,
                request,
                async |core, call, request| {
                    let (id, changes) = convert::update(request)?;
                    let organization = core.update_organization(call, id, changes).await?;
                    Ok(proto::UpdateOrganizationResponse {
                        organization: Some(convert::organization(organization)),
                    })
                },
            )
            .await
    }

    async fn delete_organization(
        &self,
        request: Request<proto::DeleteOrganizationRequest>,
    ) -> RpcResult<proto::DeleteOrganizationResponse> {
        self.0
            .serve(
                Rpc::DeleteOrganization,
                request,
                async |core, call, request| {
                    let id = convert::organization_id("id", &request.id)?;
                    core.delete_organization(call, id).await?;
                    Ok(proto::DeleteOrganizationResponse {})
                },
            )
            .await
    }

    async fn ensure_organization(
        &self,
        request: Request<proto::EnsureOrganizationRequest>,
    ) -> RpcResult<proto::EnsureOrganizationResponse> {
        self.0
            .serve(
                Rpc::EnsureOrganization,
                request,
                async |core, call, request| {
                    let new = convert::ensure_organization(request)?;
                    let (organization, created) = core.ensure_organization(call, new).await?;
                    Ok(proto::EnsureOrganizationResponse {
                        organization: Some(convert::organization(organization)),
                        created,
                    })
                },
            )
            .await
    }
}
