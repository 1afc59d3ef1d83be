//! The Admin Portal use cases: mint a link, revoke an admin's links, list the intents.

use crate::{
    auth::policy::{AccessRequest, Rpc},
    domain::{Intent, LINK_LIFETIME, LinkRequest, OrganizationRef, PortalLink, RedirectUrl},
    error::Error,
};

use super::{Call, Gateway, IntentInfo};

impl Gateway {
    /// Mints a portal link: authorizes the caller for the organization, intent and URLs,
    /// resolves the organization, fills in configured default URLs, and records the link's
    /// fingerprint in the audit facts. The acting user becomes WorkOS's `external_user_id`
    /// (unless the request names one), so RevokeLinks can cut that user off later.
    pub async fn generate_link(
        &self,
        call: &mut Call,
        mut request: LinkRequest,
    ) -> Result<PortalLink, Error> {
        if request.external_user_id.is_none() {
            request.external_user_id = call.acting_user.as_deref().map(str::to_owned);
        }
        call.facts.link_request(
            request.intent.workos_name(),
            request.return_url.as_ref().map(RedirectUrl::origin),
            request.success_url.as_ref().map(RedirectUrl::origin),
            request.external_user_id.as_deref(),
        );
        let acting_user = call.acting_user.clone();
        let base = AccessRequest {
            intent: Some(request.intent),
            return_url: request.return_url.as_ref(),
            success_url: request.success_url.as_ref(),
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(Rpc::GenerateLink)
        };
        let organization_id = self
            .authorize_and_resolve(call, base, &request.organization)
            .await?;
        let return_url = request
            .return_url
            .as_ref()
            .or(self.portal.return_url(request.intent));
        let success_url = request
            .success_url
            .as_ref()
            .or(self.portal.success_url(request.intent));
        let (link, minted) = self
            .workos
            .generate_link(
                &mut call.upstream,
                &organization_id,
                &request,
                return_url,
                success_url,
            )
            .await
            .map_err(|e| Error::from(e).not_found_as("organization", organization_id.as_str()))?;
        call.facts.link(&link);
        Ok(PortalLink {
            link,
            expires_at: minted + LINK_LIFETIME,
            organization_id,
            intent: request.intent,
        })
    }

    /// Revokes every link minted for `external_user_id` in an organization. Returns the
    /// organization's WorkOS id.
    pub async fn revoke_links(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
        external_user_id: String,
    ) -> Result<crate::domain::OrganizationId, Error> {
        let acting_user = call.acting_user.clone();
        let base = AccessRequest {
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(Rpc::RevokeLinks)
        };
        let organization_id = self
            .authorize_and_resolve(call, base, &organization)
            .await?;
        self.workos
            .revoke_links(&mut call.upstream, &organization_id, &external_user_id)
            .await
            .map_err(|e| Error::from(e).not_found_as("organization", organization_id.as_str()))?;
        Ok(organization_id)
    }

    /// Every intent with its configured defaults.
    pub fn list_intents(&self, call: &mut Call) -> Result<Vec<IntentInfo>, Error> {
        let acting_user = call.acting_user.clone();
        self.authorize(
            call,
            &AccessRequest {
                acting_user: acting_user.as_deref(),
                ..AccessRequest::new(Rpc::ListIntents)
            },
        )?;
        Ok(Intent::ALL
            .into_iter()
            .map(|intent| IntentInfo {
                intent,
                return_url: self
                    .portal
                    .return_url(intent)
                    .map(|u| u.as_str().to_owned()),
                success_url: self
                    .portal
                    .success_url(intent)
                    .map(|u| u.as_str().to_owned()),
            })
            .collect())
    }
}
