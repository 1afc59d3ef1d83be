//! WorkOS's JSON shapes, private to the client. They never leave `crate::workos`: responses are
//! turned into `crate::domain` types here, and requests are built from them here.

use std::{collections::BTreeMap, time::SystemTime};

use serde::{Deserialize, Serialize};

use super::Error;
use crate::domain::{
    self, Domain, DomainState, Organization, OrganizationId, VerificationStrategy,
};

#[derive(Debug, Deserialize)]
pub(super) struct OrganizationWire {
    id: String,
    name: String,
    // WorkOS has sent organizations without these; the official SDKs default them.
    #[serde(default)]
    domains: Vec<DomainWire>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    stripe_customer_id: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Deserialize)]
struct DomainWire {
    id: String,
    domain: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    verification_strategy: Option<String>,
    #[serde(default)]
    verification_prefix: Option<String>,
    #[serde(default)]
    verification_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ListWire {
    data: Vec<OrganizationWire>,
    #[serde(default)]
    list_metadata: ListMetadataWire,
}

#[derive(Debug, Default, Deserialize)]
struct ListMetadataWire {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LinkWire {
    pub(super) link: String,
}

/// A WorkOS error body; every field is optional because WorkOS uses several shapes.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorWire {
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default)]
    pub(super) message: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) errors: Vec<FieldErrorWire>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FieldErrorWire {
    #[serde(default)]
    pub(super) field: Option<String>,
    #[serde(default)]
    pub(super) code: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct DomainDataWire<'a> {
    domain: &'a str,
    state: &'static str,
}

impl<'a> From<&'a domain::DomainClaim> for DomainDataWire<'a> {
    fn from(claim: &'a domain::DomainClaim) -> Self {
        Self {
            domain: &claim.domain,
            state: if claim.verified {
                "verified"
            } else {
                "pending"
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct CreateOrganizationWire<'a> {
    pub(super) name: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) domain_data: Vec<DomainDataWire<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) external_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(super) struct GenerateLinkWire<'a> {
    pub(super) organization: &'a str,
    pub(super) intent: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) return_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) success_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) external_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) it_contact_emails: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
pub(super) struct RevokeLinkWire<'a> {
    pub(super) organization: &'a str,
    pub(super) external_user_id: &'a str,
}

fn timestamp(field: &'static str, value: &str) -> Result<SystemTime, Error> {
    humantime::parse_rfc3339(value).map_err(|_| Error::Malformed { field })
}

fn organization_id(value: String) -> Result<OrganizationId, Error> {
    OrganizationId::parse(&value).map_err(|_| Error::Malformed { field: "id" })
}

impl OrganizationWire {
    pub(super) fn into_domain(self) -> Result<Organization, Error> {
        Ok(Organization {
            id: organization_id(self.id)?,
            name: self.name,
            domains: self
                .domains
                .into_iter()
                .map(DomainWire::into_domain)
                .collect(),
            metadata: self.metadata.unwrap_or_default(),
            external_id: self.external_id,
            stripe_customer_id: self.stripe_customer_id,
            created_at: timestamp("created_at", &self.created_at)?,
            updated_at: timestamp("updated_at", &self.updated_at)?,
        })
    }
}

impl DomainWire {
    fn into_domain(self) -> Domain {
        Domain {
            id: self.id,
            domain: self.domain,
            state: match self.state.as_deref() {
                Some("pending") => DomainState::Pending,
                Some("verified") => DomainState::Verified,
                Some("failed") => DomainState::Failed,
                Some("legacy_verified") => DomainState::LegacyVerified,
                _ => DomainState::Unknown,
            },
            verification_strategy: match self.verification_strategy.as_deref() {
                Some("dns") => VerificationStrategy::Dns,
                Some("manual") => VerificationStrategy::Manual,
                _ => VerificationStrategy::Unknown,
            },
            verification_prefix: self.verification_prefix,
            verification_token: self.verification_token,
        }
    }
}

impl ListWire {
    pub(super) fn into_domain(self) -> Result<domain::OrganizationPage, Error> {
        let cursor = |c: Option<String>| c.map(organization_id).transpose();
        Ok(domain::OrganizationPage {
            organizations: self
                .data
                .into_iter()
                .map(OrganizationWire::into_domain)
                .collect::<Result<_, _>>()?,
            before: cursor(self.list_metadata.before)?,
            after: cursor(self.list_metadata.after)?,
        })
    }
}
