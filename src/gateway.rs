//! The gateway's core: what each RPC does, in domain types, between the gRPC adapters
//! (`crate::grpc`) and the WorkOS client (`crate::workos`). No proto or wire type appears here.

use std::collections::BTreeMap;

use crate::{
    domain::{
        ExternalId, Intent, LINK_LIFETIME, LinkRequest, ListQuery, NewOrganization, Organization,
        OrganizationChanges, OrganizationId, OrganizationPage, OrganizationRef, PortalLink,
        RedirectUrl,
    },
    error::Error,
    workos,
};

/// Return and success URLs used when a request names none.
#[derive(Debug, Clone, Default)]
pub struct UrlDefaults {
    /// The portal's "back" link.
    pub return_url: Option<RedirectUrl>,
    /// Where the admin lands when done.
    pub success_url: Option<RedirectUrl>,
}

/// Portal settings from configuration.
#[derive(Debug, Clone, Default)]
pub struct PortalSettings {
    /// Whether `http://localhost` return and success URLs are accepted (development only).
    pub allow_http_loopback: bool,
    /// Defaults for every intent.
    pub defaults: UrlDefaults,
    /// Per-intent defaults, which win over `defaults`.
    pub intent_defaults: BTreeMap<Intent, UrlDefaults>,
}

impl PortalSettings {
    /// The default return URL for an intent.
    pub fn return_url(&self, intent: Intent) -> Option<&RedirectUrl> {
        self.intent_defaults
            .get(&intent)
            .and_then(|d| d.return_url.as_ref())
            .or(self.defaults.return_url.as_ref())
    }

    /// The default success URL for an intent.
    pub fn success_url(&self, intent: Intent) -> Option<&RedirectUrl> {
        self.intent_defaults
            .get(&intent)
            .and_then(|d| d.success_url.as_ref())
            .or(self.defaults.success_url.as_ref())
    }
}

/// One intent as `ListIntents` reports it.
#[derive(Debug, Clone)]
pub struct IntentInfo {
    /// The intent.
    pub intent: Intent,
    /// Default return URL, if configured.
    pub return_url: Option<String>,
    /// Default success URL, if configured.
    pub success_url: Option<String>,
}

/// The gateway. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Gateway {
    workos: workos::Client,
    portal: std::sync::Arc<PortalSettings>,
}

impl Gateway {
    /// Wires the core to a WorkOS client.
    pub fn new(workos: workos::Client, portal: PortalSettings) -> Self {
        Self {
            workos,
            portal: std::sync::Arc::new(portal),
        }
    }

    /// Portal settings, for request validation at the edge.
    pub fn portal_settings(&self) -> &PortalSettings {
        &self.portal
    }

    /// Creates an organization.
    pub async fn create_organization(
        &self,
        call: &workos::Call,
        new: &NewOrganization,
    ) -> Result<Organization, Error> {
        self.workos
            .create_organization(call, new)
            .await
            .map_err(|e| already_exists(e, new))
    }

    /// Reads an organization by id or external id.
    pub async fn get_organization(
        &self,
        call: &workos::Call,
        organization: &OrganizationRef,
    ) -> Result<Organization, Error> {
        match organization {
            OrganizationRef::Id(id) => self
                .workos
                .get_organization(call, id)
                .await
                .map(|(org, _)| org)
                .map_err(|e| Error::not_found_as(e, "organization", id.as_str())),
            OrganizationRef::External(external_id) => {
                self.get_by_external_id(call, external_id).await
            }
        }
    }

    async fn get_by_external_id(
        &self,
        call: &workos::Call,
        external_id: &ExternalId,
    ) -> Result<Organization, Error> {
        self.workos
            .get_organization_by_external_id(call, external_id)
            .await
            .map(|(org, _)| org)
            .map_err(|e| {
                Error::not_found_as(e, "organization", format!("external_id:{external_id}"))
            })
    }

    /// The WorkOS id of an organization; an external id costs one lookup.
    pub async fn resolve(
        &self,
        call: &workos::Call,
        organization: &OrganizationRef,
    ) -> Result<OrganizationId, Error> {
        match organization {
            OrganizationRef::Id(id) => Ok(id.clone()),
            OrganizationRef::External(external_id) => {
                Ok(self.get_by_external_id(call, external_id).await?.id)
            }
        }
    }

    /// One page of organizations.
    pub async fn list_organizations(
        &self,
        call: &workos::Call,
        query: &ListQuery,
    ) -> Result<OrganizationPage, Error> {
        Ok(self.workos.list_organizations(call, query).await?)
    }

    /// Applies changes to an organization.
    pub async fn update_organization(
        &self,
        call: &workos::Call,
        id: &OrganizationId,
        changes: &OrganizationChanges,
    ) -> Result<Organization, Error> {
        self.workos
            .update_organization(call, id, changes)
            .await
            .map_err(|e| match e.code() {
                Some("external_id_already_used")
                | Some("stripe_customer_id_already_used")
                | Some("domain_already_exists") => conflict(e, id.as_str()),
                _ => Error::not_found_as(e, "organization", id.as_str()),
            })
    }

    /// Deletes an organization.
    pub async fn delete_organization(
        &self,
        call: &workos::Call,
        id: &OrganizationId,
    ) -> Result<(), Error> {
        self.workos
            .delete_organization(call, id)
            .await
            .map_err(|e| Error::not_found_as(e, "organization", id.as_str()))
    }

    /// Gets the organization with `new.external_id`, creating it from `new` when there is none.
    /// Returns whether this call created it.
    ///
    /// Two racing calls both miss the lookup and both create; WorkOS's uniqueness of external
    /// ids lets only one succeed, and the loser reads the winner's organization. That holds
    /// across replicas, with no lock of our own.
    pub async fn ensure_organization(
        &self,
        call: &workos::Call,
        new: &NewOrganization,
    ) -> Result<(Organization, bool), Error> {
        let Some(external_id) = &new.external_id else {
            return Err(crate::error::Invalid {
                violations: vec![crate::error::FieldViolation {
                    field: "external_id".into(),
                    description: "is required".into(),
                }],
            }
            .into());
        };
        match self.get_by_external_id(call, external_id).await {
            Ok(found) => return Ok((found, false)),
            Err(Error::NotFound { .. }) => {}
            Err(other) => return Err(other),
        }
        match self.workos.create_organization(call, new).await {
            Ok(created) => Ok((created, true)),
            Err(e) if e.code() == Some("external_id_already_used") => {
                Ok((self.get_by_external_id(call, external_id).await?, false))
            }
            Err(e) => Err(already_exists(e, new)),
        }
    }

    /// Mints a portal link for a resolved organization, filling in configured default URLs.
    pub async fn generate_link(
        &self,
        call: &workos::Call,
        organization_id: &OrganizationId,
        request: &LinkRequest,
    ) -> Result<PortalLink, Error> {
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
                call,
                organization_id,
                request.intent,
                request,
                return_url,
                success_url,
            )
            .await
            .map_err(|e| Error::not_found_as(e, "organization", organization_id.as_str()))?;
        Ok(PortalLink {
            link,
            expires_at: minted + LINK_LIFETIME,
            organization_id: organization_id.clone(),
            intent: request.intent,
        })
    }

    /// Revokes every link minted for `external_user_id` in an organization.
    pub async fn revoke_links(
        &self,
        call: &workos::Call,
        organization_id: &OrganizationId,
        external_user_id: &str,
    ) -> Result<(), Error> {
        self.workos
            .revoke_links(call, organization_id, external_user_id)
            .await
            .map_err(|e| Error::not_found_as(e, "organization", organization_id.as_str()))
    }

    /// Every intent with its configured defaults.
    pub fn intents(&self) -> Vec<IntentInfo> {
        Intent::ALL
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
            .collect()
    }
}

/// Uniqueness refusals on create become ALREADY_EXISTS naming the clashing value.
fn already_exists(error: workos::Error, new: &NewOrganization) -> Error {
    match error.code() {
        Some("external_id_already_used") => Error::AlreadyExists {
            reason: "EXTERNAL_ID_ALREADY_USED",
            resource_type: "organization",
            name: new
                .external_id
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default(),
            description: "an organization with this external_id already exists".into(),
        },
        Some("domain_already_exists") => Error::AlreadyExists {
            reason: "DOMAIN_ALREADY_EXISTS",
            resource_type: "organization_domain",
            name: String::new(),
            description: "one of the domains belongs to another organization".into(),
        },
        _ => Error::Upstream(error),
    }
}

fn conflict(error: workos::Error, organization_id: &str) -> Error {
    let (reason, description) = match error.code() {
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
