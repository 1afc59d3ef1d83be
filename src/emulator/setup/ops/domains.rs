//! Domain verification: adding, verifying and failing organization domains.

use serde_json::{Value, json};

use super::{Outcome, SetupError, Step, organization};
use crate::emulator::{
    events,
    state::{Domain, DomainState, Store},
};

/// Emits what a new domain announces: `organization_domain.created`, and for a domain that
/// arrives verified (`domain_data` with `verified`) also `organization_domain.verified`, so a
/// consumer that listens only for verification sees every verified domain. (Whether WorkOS sends
/// both for such a domain is unconfirmed.)
pub(crate) fn announce_new_domain(store: &mut Store, domain: &Domain) -> Vec<String> {
    let mut ids = vec![store.emit(
        events::DOMAIN_CREATED,
        Some(&domain.organization_id),
        domain.to_json(),
    )];
    if domain.state == DomainState::Verified {
        ids.push(store.emit(
            events::DOMAIN_VERIFIED,
            Some(&domain.organization_id),
            domain.to_json(),
        ));
    }
    ids
}

/// Adds a pending domain, as the portal's domain form and `POST /organization_domains` do.
pub(crate) fn add_domain(store: &mut Store, organization_id: &str, domain: &str) -> Step {
    organization(store, organization_id)?;
    let domain = domain.to_ascii_lowercase();
    if store.domain_owner.contains_key(&domain) {
        return Err(SetupError::Conflict(format!(
            "The domain {domain} already exists."
        )));
    }
    let new = store.new_domain(organization_id, &domain, DomainState::Pending);
    store
        .domain_owner
        .insert(domain, organization_id.to_owned());
    if let Some(organization) = store.organizations.get_mut(organization_id) {
        organization.domains.push(new.clone());
    }
    Ok(Outcome {
        events: announce_new_domain(store, &new),
        changed: ("organization_domain", new.to_json()),
    })
}

/// The index of `domain` among the organization's domains.
fn domain_index(store: &Store, organization_id: &str, domain: &str) -> Result<usize, SetupError> {
    organization(store, organization_id)?
        .domains
        .iter()
        .position(|d| d.domain.eq_ignore_ascii_case(domain))
        .ok_or_else(|| {
            SetupError::Invalid(
                "domain",
                format!("{domain} is not a domain of {organization_id}"),
            )
        })
}

/// Changes one domain's state and emits `event` with the payload `payload` builds from it.
fn change_domain(
    store: &mut Store,
    organization_id: &str,
    index: usize,
    state: DomainState,
    event: &'static str,
    payload: impl FnOnce(&Domain) -> Value,
) -> Step {
    let now = store.now();
    let Some(domain) = store
        .organizations
        .get_mut(organization_id)
        .and_then(|o| o.domains.get_mut(index))
    else {
        return Err(SetupError::NoOrganization);
    };
    domain.state = state;
    domain.updated_at = now;
    let domain = domain.clone();
    let event_id = store.emit(event, Some(organization_id), payload(&domain));
    Ok(Outcome {
        events: vec![event_id],
        changed: ("organization_domain", domain.to_json()),
    })
}

/// Marks a pending or failed domain verified (the DNS record was found, or verification was
/// restarted and succeeded) and emits `organization_domain.verified`.
pub(crate) fn verify_domain_at(store: &mut Store, organization_id: &str, index: usize) -> Step {
    let current = organization(store, organization_id)?
        .domains
        .get(index)
        .ok_or(SetupError::NoOrganization)?;
    if !matches!(current.state, DomainState::Pending | DomainState::Failed) {
        return Err(SetupError::Conflict(format!(
            "The domain {} is already verified.",
            current.domain
        )));
    }
    change_domain(
        store,
        organization_id,
        index,
        DomainState::Verified,
        events::DOMAIN_VERIFIED,
        Domain::to_json,
    )
}

/// [`verify_domain_at`] by domain name.
pub(crate) fn verify_domain(store: &mut Store, organization_id: &str, domain: &str) -> Step {
    let index = domain_index(store, organization_id, domain)?;
    verify_domain_at(store, organization_id, index)
}

/// A pending domain fails verification: `failed`, and `organization_domain.verification_failed`
/// with `reason`.
pub(crate) fn fail_domain(
    store: &mut Store,
    organization_id: &str,
    domain: &str,
    reason: &'static str,
) -> Step {
    let index = domain_index(store, organization_id, domain)?;
    let current = &store.organizations[organization_id].domains[index];
    if current.state != DomainState::Pending {
        return Err(SetupError::Conflict(format!(
            "The domain {} is {}, not pending.",
            current.domain,
            current.state.as_str()
        )));
    }
    change_domain(
        store,
        organization_id,
        index,
        DomainState::Failed,
        events::DOMAIN_VERIFICATION_FAILED,
        |d| json!({ "reason": reason, "organization_domain": d.to_json() }),
    )
}
