//! Directory Sync directories: list, get, delete. Directories are made by the portal's dsync
//! flow or the control API's setup. Their `state` uses the REST vocabulary (`linked`,
//! `unlinked`, ...), not the events' (`active`, `inactive`).

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::IntoResponse,
};

use super::{ApiResult, listing::parse_query};
use crate::emulator::{
    Shared,
    setup::{Directory, ops},
    wire::{ApiError, json_response},
};

/// `GET /directories`: filters `organization_id`, `search` (a case-insensitive part of the
/// name) and the deprecated `domain`, with WorkOS's cursor pagination.
pub(crate) async fn list_directories(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let mut organization_id = None;
    let mut domain = None;
    let mut search = None;
    let paging = parse_query(query.as_deref(), |key, value, _| {
        match key {
            "organization_id" => organization_id = Some(value),
            "domain" => domain = Some(value.to_ascii_lowercase()),
            "search" => search = Some(value.to_lowercase()),
            _ => return false,
        }
        true
    })?;
    let store = shared.store();
    let matching: Vec<&Directory> = store
        .directories
        .values()
        .filter(|d| {
            organization_id
                .as_ref()
                .is_none_or(|o| &d.organization_id == o)
        })
        .filter(|d| domain.is_none() || d.domain == domain)
        .filter(|d| {
            search
                .as_ref()
                .is_none_or(|s| d.name.to_lowercase().contains(s))
        })
        .collect();
    let body = paging.page(matching, |d| d.id.as_str(), |d| d.to_json());
    Ok(json_response(StatusCode::OK, &body))
}

pub(crate) async fn get_directory(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let store = shared.store();
    let directory = store
        .directories
        .get(&id)
        .ok_or_else(|| ApiError::not_found("Directory", &id))?;
    Ok(json_response(StatusCode::OK, &directory.to_json()))
}

/// `DELETE /directories/{id}`: 202 with the `text/plain` body `Accepted`, as recorded from
/// WorkOS; emits `dsync.deleted`. WorkOS's spec lists no 404 here; an unknown id gets the same
/// 404 as a get, rather than a 202 that would hide a client's mistake.
pub(crate) async fn delete_directory(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult {
    let mut store = shared.store();
    ops::delete_directory(&mut store, &id).ok_or_else(|| ApiError::not_found("Directory", &id))?;
    let mut response = (StatusCode::ACCEPTED, "Accepted").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
