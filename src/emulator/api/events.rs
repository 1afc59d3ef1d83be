//! `GET /events`: the Events API. Unlike the other lists it is always oldest first, pages
//! forward only with `after`, and its `list_metadata` holds only `after`.

use std::time::SystemTime;

use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
};
use serde_json::{Value, json};

use super::{
    ApiResult,
    listing::{limit_error, order_error, parse_limit, unknown_property},
};
use crate::emulator::{
    Shared,
    events::{EVENT_NAMES, Event},
    wire::{ApiError, FieldError, json_response},
};

/// What a valid query asks for.
#[derive(Debug, Default)]
struct EventQuery {
    names: Vec<String>,
    organization_id: Option<String>,
    after: Option<String>,
    range_start: Option<SystemTime>,
    range_end: Option<SystemTime>,
    limit: usize,
}

/// `events` comes in three forms, all accepted: comma-joined in one parameter (what the
/// official SDKs send), repeated `events=a&events=b`, and `events[]=a&events[]=b`.
///
/// Choices where WorkOS's behaviour is unconfirmed:
/// - A missing or empty `events` is a 422 naming `events` with code `required` (the example in
///   WorkOS's spec); an unknown name is a 400 `invalid_events_request`.
/// - `range_start` and `range_end` must be ISO-8601 UTC with a `Z` (offsets such as `+00:00`
///   are refused, as the Python SDK documents); the range is `[range_start, range_end)`.
/// - `after` together with `range_start` is accepted and both apply (WorkOS's docs call them
///   mutually exclusive, without saying the API refuses the pair).
/// - `after` must look like an event id (`event_` and a ULID); it need not be a listed event.
/// - `before` is refused: its meaning with oldest-first order is undocumented, so a client that
///   relies on it should hear so here rather than at WorkOS.
/// - `order` is validated like elsewhere and then ignored, as WorkOS ignores it.
/// - `list_metadata.after` is the last event's id on every non-empty page (also the last page)
///   and `null` on an empty page, so a consumer can keep the cursor it is given.
fn parse(query: Option<&str>) -> Result<EventQuery, ApiError> {
    let mut errors = Vec::new();
    let mut parsed = EventQuery {
        limit: 10,
        ..EventQuery::default()
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "events" | "events[]" => parsed.names.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            ),
            "organization_id" if !value.is_empty() => {
                parsed.organization_id = Some(value.into_owned());
            }
            "after" if !value.is_empty() => {
                if !is_event_id(&value) {
                    errors.push(field_error("after", "after must be an event id"));
                }
                parsed.after = Some(value.into_owned());
            }
            "organization_id" | "after" => {}
            "range_start" | "range_end" => {
                let time = value
                    .ends_with('Z')
                    .then(|| humantime::parse_rfc3339(&value).ok())
                    .flatten();
                if time.is_none() {
                    errors.push(field_error(
                        &key,
                        &format!("{key} must be an ISO-8601 UTC timestamp ending in Z"),
                    ));
                }
                if key == "range_start" {
                    parsed.range_start = time;
                } else {
                    parsed.range_end = time;
                }
            }
            "limit" => match parse_limit(&value) {
                Some(limit) => parsed.limit = limit,
                None => errors.push(limit_error()),
            },
            "order" => {
                if !matches!(value.as_ref(), "asc" | "desc" | "normal") {
                    errors.push(order_error());
                }
            }
            "before" => errors.push(field_error(
                "before",
                "before is not supported: events are listed oldest first; page with after",
            )),
            other => errors.push(unknown_property(other)),
        }
    }
    if parsed.names.is_empty() {
        errors.insert(0, field_error("events", "required"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    if let Some(unknown) = parsed
        .names
        .iter()
        .find(|n| !EVENT_NAMES.contains(&n.as_str()))
    {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "invalid_events_request",
            format!(
                "Invalid name parameter, received: '{unknown}'. You must pass in valid event names"
            ),
        ));
    }
    Ok(parsed)
}

fn field_error(field: &str, code: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        code: code.to_owned(),
    }
}

fn is_event_id(id: &str) -> bool {
    id.strip_prefix("event_")
        .is_some_and(|ulid| ulid::Ulid::from_string(ulid).is_ok())
}

impl EventQuery {
    fn admits(&self, event: &Event) -> bool {
        self.names.iter().any(|n| n == event.event)
            && self
                .organization_id
                .as_ref()
                .is_none_or(|o| event.organization_id.as_ref() == Some(o))
            && self.after.as_ref().is_none_or(|a| event.id > *a)
            && self.range_start.is_none_or(|s| event.created_at >= s)
            && self.range_end.is_none_or(|e| event.created_at < e)
    }
}

pub(crate) async fn list_events(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let query = parse(query.as_deref())?;
    let store = shared.store();
    let page: Vec<Value> = store
        .events
        .live(store.now())
        .filter(|e| query.admits(e))
        .take(query.limit)
        .map(Event::to_json)
        .collect();
    let after = page.last().map(|e| e["id"].clone()).unwrap_or(Value::Null);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "object": "list", "data": page, "list_metadata": { "after": after } }),
    ))
}
