//! Proto <-> domain conversions. Parsing collects every invalid field, named by its proto path,
//! so a caller learns all its mistakes from one INVALID_ARGUMENT.

use std::time::SystemTime;

use crate::{
    domain::{
        self, DomainClaim, Email, ExternalId, Intent, LinkRequest, Metadata, NewOrganization,
        OrganizationChanges, OrganizationId, OrganizationRef, RedirectUrl,
    },
    error::Invalid,
    proto,
};

/// Converts a proto timestamp.
fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

pub(crate) fn organization(org: domain::Organization) -> proto::Organization {
    proto::Organization {
        id: org.id.as_str().to_owned(),
        name: org.name,
        domains: org.domains.into_iter().map(organization_domain).collect(),
        metadata: org.metadata.into_iter().collect(),
        external_id: org.external_id.unwrap_or_default(),
        stripe_customer_id: org.stripe_customer_id.unwrap_or_default(),
        create_time: Some(timestamp(org.created_at)),
        update_time: Some(timestamp(org.updated_at)),
    }
}

fn organization_domain(d: domain::Domain) -> proto::OrganizationDomain {
    use domain::{DomainState as S, VerificationStrategy as V};
    proto::OrganizationDomain {
        id: d.id,
        domain: d.domain,
        state: match d.state {
            S::Pending => proto::DomainState::Pending,
            S::Verified => proto::DomainState::Verified,
            S::Failed => proto::DomainState::Failed,
            S::LegacyVerified => proto::DomainState::LegacyVerified,
            S::Unknown => proto::DomainState::Unspecified,
        } as i32,
        verification_strategy: match d.verification_strategy {
            V::Dns => proto::DomainVerificationStrategy::Dns,
            V::Manual => proto::DomainVerificationStrategy::Manual,
            V::Unknown => proto::DomainVerificationStrategy::Unspecified,
        } as i32,
        verification_prefix: d.verification_prefix.unwrap_or_default(),
        verification_token: d.verification_token.unwrap_or_default(),
    }
}

pub(crate) fn intent_to_proto(intent: Intent) -> proto::Intent {
    match intent {
        Intent::Sso => proto::Intent::Sso,
        Intent::Dsync => proto::Intent::Dsync,
        Intent::AuditLogs => proto::Intent::AuditLogs,
        Intent::LogStreams => proto::Intent::LogStreams,
        Intent::DomainVerification => proto::Intent::DomainVerification,
        Intent::CertificateRenewal => proto::Intent::CertificateRenewal,
        Intent::BringYourOwnKey => proto::Intent::BringYourOwnKey,
    }
}

fn intent_from_proto(value: i32) -> Result<Intent, String> {
    match proto::Intent::try_from(value) {
        Ok(proto::Intent::Sso) => Ok(Intent::Sso),
        Ok(proto::Intent::Dsync) => Ok(Intent::Dsync),
        Ok(proto::Intent::AuditLogs) => Ok(Intent::AuditLogs),
        Ok(proto::Intent::LogStreams) => Ok(Intent::LogStreams),
        Ok(proto::Intent::DomainVerification) => Ok(Intent::DomainVerification),
        Ok(proto::Intent::CertificateRenewal) => Ok(Intent::CertificateRenewal),
        Ok(proto::Intent::BringYourOwnKey) => Ok(Intent::BringYourOwnKey),
        Ok(proto::Intent::Unspecified) => Err("is required".into()),
        Err(_) => Err(format!("{value} is not a known intent")),
    }
}

pub(crate) fn intent_info(info: crate::gateway::IntentInfo) -> proto::IntentInfo {
    proto::IntentInfo {
        intent: intent_to_proto(info.intent) as i32,
        workos_name: info.intent.workos_name().to_owned(),
        description: info.intent.description().to_owned(),
        default_return_url: info.return_url.unwrap_or_default(),
        default_success_url: info.success_url.unwrap_or_default(),
    }
}

pub(crate) fn portal_link(link: domain::PortalLink) -> proto::PortalLink {
    proto::PortalLink {
        link: link.link,
        expire_time: Some(timestamp(link.expires_at)),
        organization_id: link.organization_id.as_str().to_owned(),
        intent: intent_to_proto(link.intent) as i32,
    }
}

fn name(invalid: &mut Invalid, field: &str, value: &str) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        invalid.add(field, "is required");
        None
    } else if trimmed.chars().count() > domain::NAME_MAX {
        invalid.add(
            field,
            format!("must be at most {} characters", domain::NAME_MAX),
        );
        None
    } else if trimmed.chars().any(domain::is_hidden_or_control) {
        invalid.add(
            field,
            "must not contain control characters or bidirectional overrides",
        );
        None
    } else {
        Some(trimmed.to_owned())
    }
}

fn domains(
    invalid: &mut Invalid,
    field: &str,
    list: &[proto::OrganizationDomain],
) -> Vec<DomainClaim> {
    // Count first: nothing below runs on more items than any valid request has.
    if list.len() > domain::DOMAINS_MAX {
        invalid.add(
            field,
            format!("must hold at most {} domains", domain::DOMAINS_MAX),
        );
        return Vec::new();
    }
    let mut claims: Vec<DomainClaim> = Vec::with_capacity(list.len());
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let verified = match proto::DomainState::try_from(d.state) {
            Ok(proto::DomainState::Unspecified | proto::DomainState::Pending) => false,
            Ok(proto::DomainState::Verified) => true,
            _ => {
                invalid.add(
                    format!("{field}[{i}].state"),
                    "must be DOMAIN_STATE_PENDING or DOMAIN_STATE_VERIFIED",
                );
                continue;
            }
        };
        if let Some(claim) = invalid.check(
            &format!("{field}[{i}].domain"),
            DomainClaim::parse(&d.domain, verified),
        ) {
            if !seen.insert(claim.domain.clone()) {
                invalid.add(format!("{field}[{i}].domain"), "is listed twice");
            } else {
                claims.push(claim);
            }
        }
    }
    claims
}

fn metadata(
    invalid: &mut Invalid,
    field: &str,
    pairs: &std::collections::HashMap<String, String>,
) -> Option<Metadata> {
    // One pair past the limit is enough to refuse: an oversized map is not copied whole.
    let pairs = pairs.iter().take(domain::METADATA_MAX_PAIRS + 1);
    invalid.check(
        field,
        Metadata::parse(pairs.map(|(k, v)| (k.clone(), v.clone()))),
    )
}

fn optional_external_id(invalid: &mut Invalid, field: &str, value: &str) -> Option<ExternalId> {
    if value.is_empty() {
        None
    } else {
        invalid.check(field, ExternalId::parse(value))
    }
}

fn idempotency_key(invalid: &mut Invalid, request_id: &str) -> String {
    if request_id.is_empty() {
        return crate::domain::random_uuid();
    }
    if request_id.len() > domain::REQUEST_ID_MAX
        || !request_id.chars().all(|c| c.is_ascii_graphic())
    {
        invalid.add(
            "request_id",
            format!(
                "must be at most {} printable ASCII characters",
                domain::REQUEST_ID_MAX
            ),
        );
    }
    request_id.to_owned()
}

pub(crate) fn new_organization(
    req: proto::CreateOrganizationRequest,
) -> Result<NewOrganization, Invalid> {
    let mut invalid = Invalid::default();
    let name = name(&mut invalid, "name", &req.name);
    let domains = domains(&mut invalid, "domains", &req.domains);
    let metadata = metadata(&mut invalid, "metadata", &req.metadata);
    let external_id = optional_external_id(&mut invalid, "external_id", &req.external_id);
    let idempotency_key = idempotency_key(&mut invalid, &req.request_id);
    invalid.into_result()?;
    Ok(NewOrganization {
        name: name.unwrap_or_default(),
        domains,
        metadata: metadata.unwrap_or_default(),
        external_id,
        idempotency_key,
        caller_chose_key: !req.request_id.is_empty(),
    })
}

pub(crate) fn ensure_organization(
    req: proto::EnsureOrganizationRequest,
) -> Result<NewOrganization, Invalid> {
    let mut invalid = Invalid::default();
    let external_id = if req.external_id.is_empty() {
        invalid.add("external_id", "is required");
        None
    } else {
        invalid.check("external_id", ExternalId::parse(&req.external_id))
    };
    let name = name(&mut invalid, "name", &req.name);
    let domains = domains(&mut invalid, "domains", &req.domains);
    let metadata = metadata(&mut invalid, "metadata", &req.metadata);
    invalid.into_result()?;
    Ok(NewOrganization {
        name: name.unwrap_or_default(),
        domains,
        metadata: metadata.unwrap_or_default(),
        external_id,
        idempotency_key: crate::domain::random_uuid(),
        caller_chose_key: false,
    })
}

pub(crate) fn organization_id(field: &str, value: &str) -> Result<OrganizationId, Invalid> {
    let mut invalid = Invalid::default();
    let id = if value.is_empty() {
        invalid.add(field, "is required");
        None
    } else {
        invalid.check(field, OrganizationId::parse(value))
    };
    invalid.into_result()?;
    id.ok_or_default()
}

/// A tiny helper: the `Option` is `Some` whenever no violation was recorded.
trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, Invalid>;
}

impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, Invalid> {
        self.ok_or_else(Invalid::default)
    }
}

/// Reads a `oneof` naming an organization; `id_field`/`external_field` are its proto names.
fn organization_ref(
    invalid: &mut Invalid,
    id: Option<&str>,
    external: Option<&str>,
    id_field: &str,
    external_field: &str,
) -> Option<OrganizationRef> {
    match (id, external) {
        (Some(id), _) => invalid
            .check(id_field, OrganizationId::parse(id))
            .map(OrganizationRef::Id),
        (None, Some(ext)) => invalid
            .check(external_field, ExternalId::parse(ext))
            .map(OrganizationRef::External),
        (None, None) => {
            invalid.add(
                id_field,
                format!("one of {id_field} or {external_field} is required"),
            );
            None
        }
    }
}

pub(crate) fn get_organization(
    req: proto::GetOrganizationRequest,
) -> Result<OrganizationRef, Invalid> {
    use proto::get_organization_request::Organization as O;
    let mut invalid = Invalid::default();
    let (id, ext) = match &req.organization {
        Some(O::Id(id)) => (Some(id.as_str()), None),
        Some(O::ExternalId(ext)) => (None, Some(ext.as_str())),
        None => (None, None),
    };
    let organization = organization_ref(&mut invalid, id, ext, "id", "external_id");
    invalid.into_result()?;
    organization.ok_or_default()
}

/// What a page token remembers: where to go and the query it belongs to.
const PAGE_TOKEN_VERSION: &str = "v1";

/// The fields `update_mask` may name.
const UPDATABLE: [&str; 5] = [
    "name",
    "domains",
    "metadata",
    "external_id",
    "stripe_customer_id",
];

pub(crate) fn update(
    req: proto::UpdateOrganizationRequest,
) -> Result<(OrganizationId, OrganizationChanges), Invalid> {
    let mut invalid = Invalid::default();
    let Some(org) = req.organization else {
        invalid.add("organization", "is required");
        return Err(invalid);
    };
    let id = if org.id.is_empty() {
        invalid.add("organization.id", "is required");
        None
    } else {
        invalid.check("organization.id", OrganizationId::parse(&org.id))
    };
    let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        invalid.add(
            "update_mask",
            format!("must name at least one of {}", UPDATABLE.join(", ")),
        );
    }
    let mut changes = OrganizationChanges::default();
    // Each path once, however often the mask repeats it: a repeated path must not repeat the
    // check of a field that may be megabytes long.
    let mut seen = std::collections::HashSet::with_capacity(UPDATABLE.len());
    for path in &paths {
        if !seen.insert(path.as_str()) {
            continue;
        }
        match path.as_str() {
            "name" => changes.name = name(&mut invalid, "organization.name", &org.name),
            "domains" => {
                changes.domains = Some(domains(&mut invalid, "organization.domains", &org.domains))
            }
            "metadata" => {
                changes.metadata = metadata(&mut invalid, "organization.metadata", &org.metadata)
            }
            "external_id" => {
                changes.external_id = Some(optional_external_id(
                    &mut invalid,
                    "organization.external_id",
                    &org.external_id,
                ))
            }
            "stripe_customer_id" => {
                let value = org.stripe_customer_id.trim();
                if value.len() > 255 || value.chars().any(char::is_control) {
                    invalid.add(
                        "organization.stripe_customer_id",
                        "must be at most 255 characters",
                    );
                }
                changes.stripe_customer_id = Some((!value.is_empty()).then(|| value.to_owned()));
            }
            other => invalid.add(
                "update_mask.paths",
                format!(
                    "{other:?} cannot be updated; use any of {}",
                    UPDATABLE.join(", ")
                ),
            ),
        }
    }
    invalid.into_result()?;
    Ok((id.ok_or_default()?, changes))
}

pub(crate) fn link_request(
    req: proto::GenerateLinkRequest,
    allow_http_loopback: bool,
) -> Result<LinkRequest, Invalid> {
    use proto::generate_link_request::Organization as O;
    let mut invalid = Invalid::default();
    let (id, ext) = match &req.organization {
        Some(O::OrganizationId(id)) => (Some(id.as_str()), None),
        Some(O::ExternalId(ext)) => (None, Some(ext.as_str())),
        None => (None, None),
    };
    let organization = organization_ref(&mut invalid, id, ext, "organization_id", "external_id");
    let intent = invalid.check("intent", intent_from_proto(req.intent));
    let return_url = optional_url(
        &mut invalid,
        "return_url",
        &req.return_url,
        allow_http_loopback,
    );
    let success_url = optional_url(
        &mut invalid,
        "success_url",
        &req.success_url,
        allow_http_loopback,
    );
    let external_user_id = external_user_id(&mut invalid, &req.external_user_id, false);
    let emails: Vec<Email> = if req.it_contact_emails.len() > domain::IT_CONTACTS_MAX {
        invalid.add(
            "it_contact_emails",
            format!("must hold at most {} addresses", domain::IT_CONTACTS_MAX),
        );
        Vec::new()
    } else {
        req.it_contact_emails
            .iter()
            .enumerate()
            .filter_map(|(i, e)| invalid.check(&format!("it_contact_emails[{i}]"), Email::parse(e)))
            .collect()
    };
    invalid.into_result()?;
    Ok(LinkRequest {
        organization: organization.ok_or_default()?,
        intent: intent.ok_or_default()?,
        return_url,
        success_url,
        external_user_id,
        it_contact_emails: emails,
    })
}

fn external_user_id(invalid: &mut Invalid, value: &str, required: bool) -> Option<String> {
    if value.is_empty() {
        if required {
            invalid.add("external_user_id", "is required");
        }
        return None;
    }
    if value.len() > domain::EXTERNAL_USER_ID_MAX || value.chars().any(char::is_control) {
        invalid.add(
            "external_user_id",
            format!(
                "must be at most {} characters without control characters",
                domain::EXTERNAL_USER_ID_MAX
            ),
        );
        return None;
    }
    Some(value.to_owned())
}

pub(crate) fn revoke(req: proto::RevokeLinksRequest) -> Result<(OrganizationRef, String), Invalid> {
    use proto::revoke_links_request::Organization as O;
    let mut invalid = Invalid::default();
    let (id, ext) = match &req.organization {
        Some(O::OrganizationId(id)) => (Some(id.as_str()), None),
        Some(O::ExternalId(ext)) => (None, Some(ext.as_str())),
        None => (None, None),
    };
    let organization = organization_ref(&mut invalid, id, ext, "organization_id", "external_id");
    let user = external_user_id(&mut invalid, &req.external_user_id, true);
    invalid.into_result()?;
    Ok((organization.ok_or_default()?, user.ok_or_default()?))
}

pub(crate) fn check_access(
    req: proto::CheckAccessRequest,
    allow_http_loopback: bool,
) -> Result<crate::gateway::AccessCheck, Invalid> {
    use proto::check_access_request::Organization as O;
    let mut invalid = Invalid::default();
    let rpc = if req.rpc.is_empty() {
        invalid.add("rpc", "is required");
        None
    } else {
        let rpc = crate::auth::policy::Rpc::from_name(&req.rpc);
        if rpc.is_none() {
            invalid.add(
                "rpc",
                format!("{:?} is not an RPC of this gateway", req.rpc),
            );
        }
        rpc
    };
    let organization = match &req.organization {
        Some(O::OrganizationId(id)) => invalid
            .check("organization_id", OrganizationId::parse(id))
            .map(OrganizationRef::Id),
        Some(O::ExternalId(ext)) => invalid
            .check("external_id", ExternalId::parse(ext))
            .map(OrganizationRef::External),
        None => None,
    };
    let intent = if req.intent == 0 {
        None
    } else {
        invalid.check("intent", intent_from_proto(req.intent))
    };
    let return_url = optional_url(
        &mut invalid,
        "return_url",
        &req.return_url,
        allow_http_loopback,
    );
    let success_url = optional_url(
        &mut invalid,
        "success_url",
        &req.success_url,
        allow_http_loopback,
    );
    let identity = (!req.identity.is_empty())
        .then(|| {
            invalid.check(
                "identity",
                crate::auth::identity::check_identity(&req.identity),
            )
        })
        .flatten()
        .map(|()| req.identity);
    invalid.into_result()?;
    Ok(crate::gateway::AccessCheck {
        rpc: rpc.ok_or_default()?,
        organization,
        intent,
        return_url,
        success_url,
        acting_user: (!req.acting_user.is_empty()).then_some(req.acting_user),
        identity,
    })
}

/// Reads an optional return or success URL; empty means unset.
fn optional_url(
    invalid: &mut Invalid,
    field: &str,
    value: &str,
    allow_http_loopback: bool,
) -> Option<RedirectUrl> {
    if value.is_empty() {
        None
    } else {
        invalid.check(field, RedirectUrl::parse(value, allow_http_loopback))
    }
}

mod invitation;
mod listing;
mod setup;
#[cfg(test)]
mod tests;

pub(crate) use invitation::{
    add_it_contact, invite_it_contact, invited, it_contact, list_it_contacts, remove_it_contact,
    revoke_invitation,
};
pub(crate) use listing::{list_query, list_response};
pub(crate) use setup::{get_setup_status, setup_status, watch_message, watch_setup};
