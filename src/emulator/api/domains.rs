//! Organization Domains: create, read, verify, delete.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};

use super::{ApiResult, idempotent};
use crate::emulator::{
    Shared, events,
    setup::ops::{self, SetupError},
    state::Store,
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
        |store| match ops::add_domain(store, &organization_id, &domain) {
            Ok(outcome) => Ok((StatusCode::CREATED, outcome.changed.1)),
            Err(SetupError::Conflict(message)) => Err(ApiError::coded(
                StatusCode::CONFLICT,
                "domain_already_exists",
                message,
            )),
            Err(_) => Err(ApiError::not_found("Organization", &organization_id)),
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
/// failure can inject one with the control API. A failed domain may be verified again (WorkOS:
/// "verification can be restarted manually").
pub(crate) async fn verify_domain(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let mut store = shared.store();
    let (organization_id, index) =
        find_domain(&store, &id).ok_or_else(|| ApiError::not_found("Organization domain", &id))?;
    match ops::verify_domain_at(&mut store, &organization_id, index) {
        Ok(outcome) => Ok(json_response(StatusCode::CREATED, &outcome.changed.1)),
        Err(SetupError::Conflict(message)) => Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "domain_already_verified",
            message,
        )),
        Err(_) => Err(ApiError::not_found("Organization domain", &id)),
    }
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
    store.emit(
        events::DOMAIN_DELETED,
        Some(&organization_id),
        removed.to_json(),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
