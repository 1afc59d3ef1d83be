//! Organizations: create, read (by id or external id), list, update, delete.

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
};
use serde_json::json;

use super::{
    ApiResult, OrganizationInputParts, check_conflicts, idempotent, insert_organization,
    listing::parse_query, parse_organization,
};
use crate::emulator::{
    Shared, events,
    setup::ops,
    state::{Domain, DomainState, Organization, Store},
    wire::{ApiError, JsonObject, json_response},
};

pub(crate) async fn create_organization(
    State(shared): State<Shared>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let input = parse_organization(&body, true)?;
    idempotent(&shared, &headers, "POST /organizations", &body, |store| {
        check_conflicts(store, &input, None)?;
        let parts = OrganizationInputParts {
            domains: input.domains.clone().unwrap_or_default(),
            metadata: input.metadata.clone().unwrap_or_default(),
            external_id: input.external_id.clone().flatten(),
            allow_profiles_outside_organization: input
                .allow_profiles_outside_organization
                .unwrap_or(false),
        };
        let organization =
            insert_organization(store, None, input.name.clone().unwrap_or_default(), parts);
        Ok((StatusCode::CREATED, organization.to_json()))
    })
}

pub(crate) async fn get_organization(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let store = shared.store();
    let organization = store
        .organizations
        .get(&id)
        .ok_or_else(|| ApiError::not_found("Organization", &id))?;
    Ok(json_response(StatusCode::OK, &organization.to_json()))
}

pub(crate) async fn get_organization_by_external_id(
    State(shared): State<Shared>,
    Path(external_id): Path<String>,
) -> ApiResult {
    let store = shared.store();
    let organization = store
        .by_external_id
        .get(&external_id)
        .and_then(|id| store.organizations.get(id))
        .ok_or_else(|| ApiError::not_found("Organization with external id", &external_id))?;
    Ok(json_response(StatusCode::OK, &organization.to_json()))
}

pub(crate) async fn update_organization(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let input = parse_organization(&body, false)?;
    let mut store = shared.store();
    if !store.organizations.contains_key(&id) {
        return Err(ApiError::not_found("Organization", &id));
    }
    check_conflicts(&store, &input, Some(&id))?;
    let now = store.now();
    // Build the replacement domain list before touching the organization: existing domains
    // keep their ids; `domain_data` replaces the set (WorkOS's merge behaviour is unconfirmed;
    // replacing is what WorkOS's own emulator does and what an update mask means).
    let new_domains = input.domains.as_ref().map(|wanted| {
        let existing = store.organizations[&id].domains.clone();
        wanted
            .iter()
            .map(
                |(name, state)| match existing.iter().find(|d| &d.domain == name) {
                    Some(found) => {
                        let mut domain = found.clone();
                        if domain.state != *state && *state != DomainState::Pending {
                            domain.state = *state;
                            domain.manual = *state == DomainState::Verified;
                            domain.updated_at = now;
                        }
                        domain
                    }
                    None => store.new_domain(&id, name, *state),
                },
            )
            .collect::<Vec<_>>()
    });
    let Some(mut organization) = store.organizations.remove(&id) else {
        return Err(ApiError::not_found("Organization", &id));
    };
    if let Some(name) = input.name {
        organization.name = name;
    }
    let mut replaced = None;
    if let Some(domains) = new_domains {
        for old in &organization.domains {
            store.domain_owner.remove(&old.domain);
        }
        for domain in &domains {
            store.domain_owner.insert(domain.domain.clone(), id.clone());
        }
        replaced = Some(std::mem::replace(&mut organization.domains, domains));
    }
    if let Some(metadata) = input.metadata {
        // Metadata is replaced as a whole (WorkOS's merge behaviour is unconfirmed).
        organization.metadata = metadata;
    }
    if let Some(external_id) = input.external_id {
        if let Some(old) = &organization.external_id {
            store.by_external_id.remove(old);
        }
        if let Some(new) = &external_id {
            store.by_external_id.insert(new.clone(), id.clone());
        }
        organization.external_id = external_id;
    }
    if let Some(stripe) = input.stripe_customer_id {
        organization.stripe_customer_id = stripe;
    }
    if let Some(allow) = input.allow_profiles_outside_organization {
        organization.allow_profiles_outside_organization = allow;
    }
    organization.updated_at = now;
    let body = organization.to_json();
    let current = organization.domains.clone();
    store.organizations.insert(id.clone(), organization);
    if let Some(previous) = replaced {
        announce_domain_changes(&mut store, &id, &previous, &current);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// The domain events of an update that replaced `previous` with `current`: new domains are
/// created, domains that became verified are verified, dropped domains are deleted.
fn announce_domain_changes(
    store: &mut Store,
    organization_id: &str,
    previous: &[Domain],
    current: &[Domain],
) {
    for domain in current {
        match previous.iter().find(|d| d.id == domain.id) {
            None => {
                ops::announce_new_domain(store, domain);
            }
            Some(before)
                if before.state != DomainState::Verified
                    && domain.state == DomainState::Verified =>
            {
                store.emit(
                    events::DOMAIN_VERIFIED,
                    Some(organization_id),
                    domain.to_json(),
                );
            }
            Some(_) => {}
        }
    }
    for domain in previous {
        if !current.iter().any(|d| d.id == domain.id) {
            store.emit(
                events::DOMAIN_DELETED,
                Some(organization_id),
                domain.to_json(),
            );
        }
    }
}

pub(crate) async fn delete_organization(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let mut store = shared.store();
    let organization = store
        .organizations
        .remove(&id)
        .ok_or_else(|| ApiError::not_found("Organization", &id))?;
    for domain in &organization.domains {
        store.domain_owner.remove(&domain.domain);
    }
    if let Some(external_id) = &organization.external_id {
        store.by_external_id.remove(external_id);
    }
    ops::delete_organization_setup(&mut store, &organization);
    store.forget_organization_invites(&id);
    // WorkOS answers 202 "Accepted"; every SDK ignores the body. An empty JSON object keeps the
    // content type honest for clients that parse every body.
    Ok(json_response(StatusCode::ACCEPTED, &json!({})))
}

/// `GET /organizations`: cursor pagination over organizations ordered by id, which for ULIDs is
/// creation order.
pub(crate) async fn list_organizations(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let mut search = None;
    let mut domains: Vec<String> = Vec::new();
    let paging = parse_query(query.as_deref(), |key, value, _| {
        match key {
            "search" => search = Some(value.to_lowercase()),
            // SDKs disagree: comma-joined (Python, Node), repeated (Go, Ruby) or `domains[]`.
            "domains" | "domains[]" => domains.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_ascii_lowercase),
            ),
            _ => return false,
        }
        true
    })?;
    let store = shared.store();
    let matching: Vec<&Organization> = store
        .organizations
        .values()
        .filter(|o| domains.is_empty() || o.domains.iter().any(|d| domains.contains(&d.domain)))
        .filter(|o| {
            search
                .as_ref()
                .is_none_or(|s| o.name.to_lowercase().contains(s))
        })
        .collect();
    let body = paging.page(matching, |o| o.id.as_str(), |o| o.to_json());
    Ok(json_response(StatusCode::OK, &body))
}
