//! Organization Domains: create, read, verify, delete.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};

use super::{ApiResult, idempotent};
use crate::emulator::{
    Shared,
    state::{DomainState, Store},
    wire::{ApiError, Fields, JsonObject, json_response, looks_like_domain},
};

pub(crate) async fn create_domain(
    State(shared): State<Shared>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let mut fields = Fields::new(&body);
    fields.only(&["domain", "organization_id"]);
    let domain = fields.required_str("domain").map(str::to_ascii_lowercase);
    let organization_id = fields.required_str("organization_id").map(str::to_owned);
    if let Some(d) = &domain
        && !looks_like_domain(d)
    {
        fields.fail("domain", format!("{d} is not a valid domain"));
    }
    fields.finish()?;
    let (Some(domain), Some(organization_id)) = (domain, organization_id) else {
        return Err(ApiError::validation(Vec::new()));
    };
    idempotent(
        &shared,
        &headers,
        "POST /organization_domains",
        &body,
        |store| {
            if !store.organizations.contains_key(&organization_id) {
                return Err(ApiError::not_found("Organization", &organization_id));
            }
            if store.domain_owner.contains_key(&domain) {
                return Err(ApiError::coded(
                    StatusCode::CONFLICT,
                    "domain_already_exists",
                    format!("The domain {domain} already exists."),
                ));
            }
            let new = store.new_domain(&organization_id, &domain, DomainState::Pending);
            let json = new.to_json();
            store
                .domain_owner
                .insert(domain.clone(), organization_id.clone());
            if let Some(organization) = store.organizations.get_mut(&organization_id) {
                organization.domains.push(new);
            }
            Ok((StatusCode::CREATED, json))
        },
    )
}

/// Finds a domain by id: (organization id, index in its list).
fn find_domain(store: &Store, id: &str) -> Option<(String, usize)> {
    store.organizations.values().find_map(|o| {
        o.domains
            .iter()
            .position(|d| d.id == id)
            .map(|i| (o.id.clone(), i))
    })
}

pub(crate) async fn get_domain(State(shared): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let store = shared.store();
    let (organization_id, index) =
        find_domain(&store, &id).ok_or_else(|| ApiError::not_found("Organization domain", &id))?;
    Ok(json_response(
        StatusCode::OK,
        &store.organizations[&organization_id].domains[index].to_json(),
    ))
}

/// Verification succeeds at once: the emulator cannot look up DNS, and a test that wants a
/// failure can inject one with the control API.
pub(crate) async fn verify_domain(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let mut store = shared.store();
    let (organization_id, index) =
        find_domain(&store, &id).ok_or_else(|| ApiError::not_found("Organization domain", &id))?;
    let now = store.now();
    let Some(domain) = store
        .organizations
        .get_mut(&organization_id)
        .map(|o| &mut o.domains[index])
    else {
        return Err(ApiError::not_found("Organization domain", &id));
    };
    if domain.state != DomainState::Pending {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "domain_already_verified",
            format!("The domain {} is already verified.", domain.domain),
        ));
    }
    domain.state = DomainState::Verified;
    domain.updated_at = now;
    Ok(json_response(StatusCode::CREATED, &domain.to_json()))
}

pub(crate) async fn delete_domain(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let mut store = shared.store();
    let (organization_id, index) =
        find_domain(&store, &id).ok_or_else(|| ApiError::not_found("Organization domain", &id))?;
    let Some(organization) = store.organizations.get_mut(&organization_id) else {
        return Err(ApiError::not_found("Organization domain", &id));
    };
    let removed = organization.domains.remove(index);
    store.domain_owner.remove(&removed.domain);
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === Admin Portal ===
