//! SSO connections: list, get, delete. Connections are made by the portal's SSO flow or the
//! control API's setup, as at WorkOS they are made in the Admin Portal or the dashboard.

use axum::{
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::IntoResponse,
};

use super::{ApiResult, listing::parse_query};
use crate::emulator::{
    Shared,
    setup::{CONNECTION_TYPES, Connection, ops},
    wire::{ApiError, FieldError, json_response},
};

/// `GET /connections`: filters `organization_id`, `connection_type`, `domain` and `search` (a
/// case-insensitive part of the name), with WorkOS's cursor pagination.
pub(crate) async fn list_connections(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let mut organization_id = None;
    let mut connection_type = None;
    let mut domain = None;
    let mut search = None;
    let paging = parse_query(query.as_deref(), |key, value, errors| {
        match key {
            "organization_id" => organization_id = Some(value),
            "connection_type" => match known_type(&value) {
                Some(known) => connection_type = Some(known),
                None => errors.push(FieldError {
                    field: "connection_type".into(),
                    code: format!("connection_type must be a connection type, not {value}"),
                }),
            },
            "domain" => domain = Some(value.to_ascii_lowercase()),
            "search" => search = Some(value.to_lowercase()),
            _ => return false,
        }
        true
    })?;
    let store = shared.store();
    let matching: Vec<&Connection> = store
        .connections
        .values()
        .filter(|c| {
            organization_id
                .as_ref()
                .is_none_or(|o| &c.organization_id == o)
        })
        .filter(|c| connection_type.is_none_or(|t| c.connection_type == t))
        .filter(|c| {
            domain
                .as_ref()
                .is_none_or(|d| c.domains.iter().any(|(_, name)| name == d))
        })
        .filter(|c| {
            search
                .as_ref()
                .is_none_or(|s| c.name.to_lowercase().contains(s))
        })
        .collect();
    let body = paging.page(matching, |c| c.id.as_str(), |c| c.to_json());
    Ok(json_response(StatusCode::OK, &body))
}

/// A connection type as objects spell it. WorkOS's filter enum spells GitHub `GithubOAuth` while
/// its objects say `GitHubOAuth`; which the API accepts is unconfirmed, so both are.
fn known_type(value: &str) -> Option<&'static str> {
    let value = if value == "GithubOAuth" {
        "GitHubOAuth"
    } else {
        value
    };
    CONNECTION_TYPES.iter().copied().find(|t| *t == value)
}

pub(crate) async fn get_connection(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let store = shared.store();
    let connection = store
        .connections
        .get(&id)
        .ok_or_else(|| ApiError::not_found("Connection", &id))?;
    Ok(json_response(StatusCode::OK, &connection.to_json()))
}

/// `DELETE /connections/{id}`: 204 with no body, as recorded from WorkOS; emits
/// `connection.deleted`.
pub(crate) async fn delete_connection(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let mut store = shared.store();
    ops::delete_connection(&mut store, &id)
        .ok_or_else(|| ApiError::not_found("Connection", &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
