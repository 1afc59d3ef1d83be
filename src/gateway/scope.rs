//! Organization scope: deciding whether a caller may act on one organization, and resolving an
//! external id to the WorkOS id.
//!
//! The policy decides first on what the request says. Only when the caller's rule could still
//! match on the organization's other id is the organization fetched (once) and decided on
//! again. An organization outside the caller's scope is denied whether or not it exists, so a
//! denied caller learns nothing about organizations outside its scope.

use crate::{
    auth::{
        audit::AuditEntry,
        policy::{AccessRequest, Denial, OrganizationFacts, Policy},
    },
    domain::{ExternalId, Organization, OrganizationId, OrganizationRef},
    error::Error,
    workos,
};

use super::{Call, Gateway};

/// Notes what a reference says about the organization in the audit facts.
pub(super) fn note(facts: &mut AuditEntry, organization: &OrganizationRef) {
    match organization {
        OrganizationRef::Id(id) => facts.organization(Some(id.as_str()), None),
        OrganizationRef::External(ext) => facts.organization(None, Some(ext.as_str())),
    }
}

impl Gateway {
    /// Authorizes `identity` for `base` about `organization`. Returns the organization when it
    /// had to be fetched to decide (so the caller need not fetch it again).
    pub(super) async fn authorize_organization(
        &self,
        policy: &Policy,
        upstream: &mut workos::Call,
        identity: &str,
        base: AccessRequest<'_>,
        organization: &OrganizationRef,
    ) -> Result<Option<Organization>, Error> {
        let (id, external_id) = match organization {
            OrganizationRef::Id(id) => (Some(id.as_str()), None),
            OrganizationRef::External(ext) => (None, Some(ext.as_str())),
        };
        let decision = policy.authorize(
            identity,
            &AccessRequest {
                organization: Some(OrganizationFacts { id, external_id }),
                ..base
            },
        );
        if decision.denial != Some(Denial::OrganizationNotAllowed) {
            return decision.into_result().map(|()| None);
        }
        let (by_ids, by_patterns) = policy.scope_keys(identity);
        if !((id.is_none() && by_ids) || (external_id.is_none() && by_patterns)) {
            return decision.into_result().map(|()| None);
        }
        let fetched = match self.get_organization_as(upstream, organization).await {
            Ok(found) => found,
            Err(Error::NotFound { .. }) => return decision.into_result().map(|()| None),
            Err(other) => return Err(other),
        };
        let second = policy.authorize(
            identity,
            &AccessRequest {
                organization: Some(OrganizationFacts {
                    id: Some(fetched.id.as_str()),
                    external_id: fetched.external_id.as_deref(),
                }),
                ..base
            },
        );
        if !second.allowed() {
            // The first refusal names the organization as the request did: a refusal must not
            // reveal the other id of an organization outside the caller's scope.
            return decision.into_result().map(|()| None);
        }
        Ok(Some(fetched))
    }

    /// Authorizes the call about `organization` and returns its WorkOS id, resolving an
    /// external id with one (cached) lookup when the decision did not already fetch it.
    pub(super) async fn authorize_and_resolve(
        &self,
        call: &mut Call,
        base: AccessRequest<'_>,
        organization: &OrganizationRef,
    ) -> Result<OrganizationId, Error> {
        note(&mut call.facts, organization);
        let fetched = self
            .authorize_organization(
                &call.policy,
                &mut call.upstream,
                &call.caller.identity,
                base,
                organization,
            )
            .await?;
        let id = match (fetched, organization) {
            (Some(found), _) => {
                call.facts
                    .organization(Some(found.id.as_str()), found.external_id.as_deref());
                found.id
            }
            (None, OrganizationRef::Id(id)) => id.clone(),
            (None, OrganizationRef::External(ext)) => {
                self.get_by_external_id(&mut call.upstream, ext).await?.id
            }
        };
        call.facts.organization(Some(id.as_str()), None);
        Ok(id)
    }

    /// Reads an organization by id or external id, NOT_FOUND naming it as the caller did.
    pub(super) async fn get_organization_as(
        &self,
        upstream: &mut workos::Call,
        organization: &OrganizationRef,
    ) -> Result<Organization, Error> {
        match organization {
            OrganizationRef::Id(id) => self
                .workos
                .get_organization(upstream, id)
                .await
                .map_err(|e| Error::from(e).not_found_as("organization", id.as_str())),
            OrganizationRef::External(external_id) => {
                self.get_by_external_id(upstream, external_id).await
            }
        }
    }

    pub(super) async fn get_by_external_id(
        &self,
        upstream: &mut workos::Call,
        external_id: &ExternalId,
    ) -> Result<Organization, Error> {
        self.workos
            .get_organization_by_external_id(upstream, external_id)
            .await
            .map_err(|e| {
                Error::from(e).not_found_as("organization", format!("external_id:{external_id}"))
            })
    }
}
