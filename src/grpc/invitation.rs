//! `adminportal.v1.InvitationService`.

use tonic::Request;

use super::{Envelope, RpcResult, convert};
use crate::{auth::policy::Rpc, proto};

/// `adminportal.v1.InvitationService`.
#[derive(Debug, Clone)]
pub struct InvitationService(Envelope);

impl InvitationService {
    /// Serves IT contacts and invitations.
    pub fn new(envelope: Envelope) -> Self {
        Self(envelope)
    }
}

#[tonic::async_trait]
impl proto::invitation_service_server::InvitationService for InvitationService {
    async fn list_it_contacts(
        &self,
        request: Request<proto::ListItContactsRequest>,
    ) -> RpcResult<proto::ListItContactsResponse> {
        self.0
            .serve(Rpc::ListItContacts, request, async |core, call, request| {
                let organization = convert::list_it_contacts(request)?;
                let contacts = core.list_it_contacts(call, organization).await?;
                Ok(proto::ListItContactsResponse {
                    it_contacts: contacts.into_iter().map(convert::it_contact).collect(),
                })
            })
            .await
    }

    async fn add_it_contact(
        &self,
        request: Request<proto::AddItContactRequest>,
    ) -> RpcResult<proto::AddItContactResponse> {
        self.0
            .serve(Rpc::AddItContact, request, async |core, call, request| {
                let (organization, email) = convert::add_it_contact(request)?;
                let (contact, created) = core.add_it_contact(call, organization, &email).await?;
                Ok(proto::AddItContactResponse {
                    it_contact: Some(convert::it_contact(contact)),
                    created,
                })
            })
            .await
    }

    async fn remove_it_contact(
        &self,
        request: Request<proto::RemoveItContactRequest>,
    ) -> RpcResult<proto::RemoveItContactResponse> {
        self.0
            .serve(
                Rpc::RemoveItContact,
                request,
                async |core, call, request| {
                    let (organization, email) = convert::remove_it_contact(request)?;
                    let it_contact_id = core.remove_it_contact(call, organization, &email).await?;
                    Ok(proto::RemoveItContactResponse { it_contact_id })
                },
            )
            .await
    }

    async fn invite_it_contact(
        &self,
        request: Request<proto::InviteItContactRequest>,
    ) -> RpcResult<proto::InviteItContactResponse> {
        self.0
            .serve(
                Rpc::InviteItContact,
                request,
                async |core, call, request| {
                    let (organization, email, intents, replace) =
                        convert::invite_it_contact(request)?;
                    let invited = core
                        .invite_it_contact(call, organization, &email, intents, replace)
                        .await?;
                    Ok(convert::invited(invited))
                },
            )
            .await
    }

    async fn revoke_invitation(
        &self,
        request: Request<proto::RevokeInvitationRequest>,
    ) -> RpcResult<proto::RevokeInvitationResponse> {
        self.0
            .serve(
                Rpc::RevokeInvitation,
                request,
                async |core, call, request| {
                    let (organization, email) = convert::revoke_invitation(request)?;
                    let it_contact_id = core.revoke_invitation(call, organization, &email).await?;
                    Ok(proto::RevokeInvitationResponse { it_contact_id })
                },
            )
            .await
    }
}
