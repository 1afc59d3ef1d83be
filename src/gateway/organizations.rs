//! The organization use cases: create, get, list, update, delete and ensure.

use crate::{
    auth::policy::{AccessRequest, OrganizationFacts, Rpc},
    domain::{
        ExternalId, ListQuery, NewOrganization, Organization, OrganizationChanges, OrganizationId,
        OrganizationPage, OrganizationRef,
    },
    error::{Error, Invalid},
};

use super::{
    Call, Gateway,
    creates::{Outcome, ReadBack},
    scope, scoped_idempotency_key,
};
use crate::workos;

impl Gateway {
    /// Creates an organization. The caller's `request_id` becomes an idempotency key scoped to
    /// the caller.
    pub async fn create_organization(
        &self,
        call: &mut Call,
        mut new: NewOrganization,
    ) -> Result<Organization, Error> {
        let external_id = new.external_id.as_ref().map(|e| e.as_str());
        call.facts.organization(None, external_id);
        let acting_user = call.acting_user.clone();
        self.authorize(
            call,
            &AccessRequest {
                organization: Some(OrganizationFacts {
                    id: None,
                    external_id,
                }),
                acting_user: acting_user.as_deref(),
                ..AccessRequest::new(Rpc::CreateOrganization)
            },
        )?;
        new.idempotency_key = scoped_idempotency_key(&call.caller.identity, &new.idempotency_key);
        let organization = if new.caller_chose_key {
            self.create_once(call, new.idempotency_key.clone(), &new)
                .await?
        } else {
            self.create_or_reconcile(call, &new, false)
                .await
                .map_err(Outcome::into_error)?
        };
        call.facts
            .organization(Some(organization.id.as_str()), None);
        Ok(organization)
    }

    /// Reads an organization by id or external id.
    pub async fn get_organization(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
    ) -> Result<Organization, Error> {
        scope::note(&mut call.facts, &organization);
        let acting_user = call.acting_user.clone();
        let base = AccessRequest {
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(Rpc::GetOrganization)
        };
        let fetched = self
            .authorize_organization(
                &call.policy,
                &mut call.upstream,
                &call.caller.identity,
                base,
                &organization,
            )
            .await?;
        match fetched {
            Some(found) => Ok(found),
            None => {
                self.get_organization_as(&mut call.upstream, &organization)
                    .await
            }
        }
    }

    /// One page of organizations.
    pub async fn list_organizations(
        &self,
        call: &mut Call,
        query: &ListQuery,
    ) -> Result<OrganizationPage, Error> {
        let acting_user = call.acting_user.clone();
        self.authorize(
            call,
            &AccessRequest {
                acting_user: acting_user.as_deref(),
                ..AccessRequest::new(Rpc::ListOrganizations)
            },
        )?;
        Ok(self
            .workos
            .list_organizations(&mut call.upstream, query)
            .await?)
    }

    /// Applies changes to an organization. Moving it to a new external id, or clearing that id,
    /// must keep it inside the caller's scope.
    pub async fn update_organization(
        &self,
        call: &mut Call,
        id: OrganizationId,
        changes: OrganizationChanges,
    ) -> Result<Organization, Error> {
        let acting_user = call.acting_user.clone();
        let base = AccessRequest {
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(Rpc::UpdateOrganization)
        };
        self.authorize_and_resolve(call, base, &OrganizationRef::Id(id.clone()))
            .await?;
        // Changing the external id, or clearing it, must leave the organization inside the
        // caller's scope: it is decided again on what the organization will be.
        if let Some(new_external_id) = &changes.external_id {
            self.authorize(
                call,
                &AccessRequest {
                    organization: Some(OrganizationFacts {
                        id: Some(id.as_str()),
                        external_id: new_external_id.as_ref().map(ExternalId::as_str),
                    }),
                    ..base
                },
            )?;
        }
        self.workos
            .update_organization(&mut call.upstream, &id, &changes)
            .await
            .map_err(|e| {
                let error = Error::from(e);
                match error.workos_code() {
                    Some(
                        "external_id_already_used"
                        | "stripe_customer_id_already_used"
                        | "domain_already_exists",
                    ) => conflict(&error, id.as_str()),
                    _ => error.not_found_as("organization", id.as_str()),
                }
            })
    }

    /// Deletes an organization.
    pub async fn delete_organization(
        &self,
        call: &mut Call,
        id: OrganizationId,
    ) -> Result<(), Error> {
        let acting_user = call.acting_user.clone();
        let base = AccessRequest {
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(Rpc::DeleteOrganization)
        };
        self.authorize_and_resolve(call, base, &OrganizationRef::Id(id.clone()))
            .await?;
        self.workos
            .delete_organization(&mut call.upstream, &id)
            .await
            .map_err(|e| Error::from(e).not_found_as("organization", id.as_str()))
    }

    /// Gets the organization with `new.external_id`, creating it from `new` when there is none.
    /// Returns whether this call created it.
    ///
    /// Two racing calls both miss the lookup and both create; WorkOS's uniqueness of external
    /// ids lets only one succeed, and the loser reads the winner's organization. That holds
    /// across replicas, with no lock of our own.
    pub async fn ensure_organization(
        &self,
        call: &mut Call,
        new: NewOrganization,
    ) -> Result<(Organization, bool), Error> {
        let Some(external_id) = new.external_id.clone() else {
            return Err(Invalid::field("external_id", "is required").into());
        };
        call.facts.organization(None, Some(external_id.as_str()));
        let acting_user = call.acting_user.clone();
        self.authorize(
            call,
            &AccessRequest {
                organization: Some(OrganizationFacts {
                    id: None,
                    external_id: Some(external_id.as_str()),
                }),
                acting_user: acting_user.as_deref(),
                ..AccessRequest::new(Rpc::EnsureOrganization)
            },
        )?;
        let found = match self
            .get_by_external_id(&mut call.upstream, &external_id)
            .await
        {
            Ok(found) => Some(found),
            Err(Error::NotFound { .. }) => None,
            Err(other) => return Err(other),
        };
        let (organization, created) = match found {
            Some(found) => (found, false),
            None => match self.create_or_reconcile(call, &new, false).await {
                Ok(created) => (created, true),
                // A racing call made it first: its organization is the answer, read fresh (the
                // lookup above remembered the external id as missing).
                Err(Outcome::NothingMade(Error::AlreadyExists {
                    reason: "EXTERNAL_ID_ALREADY_USED",
                    ..
                })) => match self.read_back(call, &new).await {
                    ReadBack::Made(winner) | ReadBack::Taken(winner) => (winner, false),
                    ReadBack::Absent | ReadBack::Unsettled => {
                        return Err(Error::from(workos::Error::OutcomeUnknown(Box::new(
                            workos::Error::Malformed {
                                field: "external_id (used, yet not found)",
                            },
                        ))));
                    }
                },
                Err(outcome) => return Err(outcome.into_error()),
            },
        };
        call.facts
            .organization(Some(organization.id.as_str()), None);
        Ok((organization, created))
    }
}

/// The refusal of a create whose external id another organization holds.
pub(super) fn external_id_taken(new: &NewOrganization) -> Error {
    Error::AlreadyExists {
        reason: "EXTERNAL_ID_ALREADY_USED",
        resource_type: "organization",
        name: new
            .external_id
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default(),
        description: "an organization with this external_id already exists".into(),
    }
}

/// Uniqueness refusals on create become ALREADY_EXISTS naming the clashing value.
pub(super) fn already_exists(error: Error, new: &NewOrganization) -> Error {
    match error.workos_code() {
        Some("external_id_already_used") => external_id_taken(new),
        Some("domain_already_exists") => Error::AlreadyExists {
            reason: "DOMAIN_ALREADY_EXISTS",
            resource_type: "organization_domain",
            name: String::new(),
            description: "one of the domains belongs to another organization".into(),
        },
        _ => error,
    }
}

fn conflict(error: &Error, organization_id: &str) -> Error {
    let (reason, description) = match error.workos_code() {
        Some("external_id_already_used") => (
            "EXTERNAL_ID_ALREADY_USED",
            "another organization has this external_id",
        ),
        Some("stripe_customer_id_already_used") => (
            "STRIPE_CUSTOMER_ID_ALREADY_USED",
            "another organization has this stripe_customer_id",
        ),
        _ => (
            "DOMAIN_ALREADY_EXISTS",
            "one of the domains belongs to another organization",
        ),
    };
    Error::AlreadyExists {
        reason,
        resource_type: "organization",
        name: organization_id.to_owned(),
        description: description.into(),
    }
}
