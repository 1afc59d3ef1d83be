//! The control API under `/_emulator/`: faults by route, reset, seed, clock, request counts, the
//! outbox of e-mailed invitations, and setup steps by intent ([`setup`]). It is for tests and demos, needs no API key, and is never
//! counted or faulted itself.

pub(crate) mod setup;

use std::time::Duration;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use serde_json::{Value, json};

use super::{
    Shared, api,
    state::Fault,
    wire::{ApiError, Fields, JsonObject, json_response},
};

pub(crate) type ControlResult = Result<Response, ApiError>;

/// `POST /_emulator/reset` `{"seed": 42}`: forgets every organization, link, setup object, IT
/// contact, invitation, outbox message, event, fault and count.
/// With a seed, ids, tokens and fault probabilities are reproducible.
pub(crate) async fn reset(
    State(shared): State<Shared>,
    JsonObject(body): JsonObject,
) -> ControlResult {
    let mut fields = Fields::new(&body);
    fields.only(&["seed"]);
    let seed = match body.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(seed) => Some(seed),
            None => {
                fields.fail("seed", "seed must be a non-negative integer");
                None
            }
        },
    };
    fields.finish()?;
    shared.store().reset(seed);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "reset": true, "seed": seed }),
    ))
}

/// `POST /_emulator/faults`: adds a fault. Fields: `route` (`"METHOD /template"` as the request
/// counts name it, or `"*"`), `status`, `retry_after` (seconds), `delay_ms`, `probability`
/// (0..1, default 1), `count` (how many requests; default unlimited), `after_commit` (let the
/// change happen, then fail), `malformed` (answer 200 with a body that is not JSON).
pub(crate) async fn add_fault(
    State(shared): State<Shared>,
    JsonObject(body): JsonObject,
) -> ControlResult {
    let mut fields = Fields::new(&body);
    fields.only(&[
        "route",
        "status",
        "retry_after",
        "delay_ms",
        "probability",
        "count",
        "after_commit",
        "malformed",
    ]);
    let route = fields.required_str("route").map(str::to_owned);
    let number = |fields: &mut Fields<'_>, name: &str| match body.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => v.as_u64().or_else(|| {
            fields.fail(name, format!("{name} must be a non-negative integer"));
            None
        }),
    };
    let status = number(&mut fields, "status");
    if let Some(s) = status
        && !(200..=599).contains(&s)
    {
        fields.fail("status", "status must be an HTTP status code");
    }
    let retry_after = number(&mut fields, "retry_after");
    let delay_ms = number(&mut fields, "delay_ms").unwrap_or(0);
    let count = number(&mut fields, "count");
    let probability = match body.get("probability") {
        None | Some(Value::Null) => 1.0,
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => p,
            _ => {
                fields.fail("probability", "probability must be a number from 0 to 1");
                1.0
            }
        },
    };
    let after_commit = fields.optional_bool("after_commit").unwrap_or(false);
    let malformed = fields.optional_bool("malformed").unwrap_or(false);
    if status.is_none() && delay_ms == 0 && !malformed {
        fields.fail("status", "a fault needs a status, a delay_ms or malformed");
    }
    fields.finish()?;
    let fault = Fault {
        id: 0,
        route: route.unwrap_or_default(),
        status: status.map(|s| s as u16),
        retry_after,
        delay: Duration::from_millis(delay_ms),
        probability,
        remaining: count,
        after_commit,
        malformed,
    };
    let mut store = shared.store();
    let id = store.add_fault(fault);
    let created = store.faults.iter().find(|f| f.id == id).map(Fault::to_json);
    Ok(json_response(
        StatusCode::CREATED,
        &created.unwrap_or(Value::Null),
    ))
}

/// `GET /_emulator/faults`: the faults in force.
pub(crate) async fn list_faults(State(shared): State<Shared>) -> Response {
    let store = shared.store();
    let faults: Vec<Value> = store.faults.iter().map(Fault::to_json).collect();
    json_response(StatusCode::OK, &json!({ "faults": faults }))
}

/// `DELETE /_emulator/faults`: removes every fault.
pub(crate) async fn clear_faults(State(shared): State<Shared>) -> Response {
    shared.store().faults.clear();
    json_response(StatusCode::OK, &json!({ "faults": [] }))
}

/// `DELETE /_emulator/faults/{id}`: removes one fault.
pub(crate) async fn delete_fault(
    State(shared): State<Shared>,
    Path(id): Path<u64>,
) -> ControlResult {
    let mut store = shared.store();
    let before = store.faults.len();
    store.faults.retain(|f| f.id != id);
    if store.faults.len() == before {
        return Err(ApiError::not_found("Fault", &id.to_string()));
    }
    Ok(json_response(StatusCode::OK, &json!({ "deleted": id })))
}

/// `POST /_emulator/seed` `{"organizations": [{"id": "org_...", "name": ..., ...}]}`: creates
/// organizations with fixed ids, validated like the API's create. All or nothing.
pub(crate) async fn seed(
    State(shared): State<Shared>,
    JsonObject(body): JsonObject,
) -> ControlResult {
    let Some(Value::Array(items)) = body.get("organizations") else {
        return Err(ApiError::validation(vec![super::wire::FieldError {
            field: "organizations".into(),
            code: "organizations must be an array".into(),
        }]));
    };
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(object) = item else {
            return Err(seed_error(i, "must be an object"));
        };
        let mut object = object.clone();
        let id = match object.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if valid_seed_id(&id) => Some(id),
            Some(_) => {
                return Err(seed_error(
                    i,
                    "id must be org_ followed by a 26-character ULID",
                ));
            }
        };
        let (name, parts) = api::parse_seed_organization(&object)?;
        parsed.push((id, name, parts));
    }
    let mut store = shared.store();
    // Check everything first, including clashes inside the seed itself, so a bad seed changes
    // nothing.
    let mut ids = std::collections::HashSet::new();
    let mut externals = std::collections::HashSet::new();
    for (i, (id, _, parts)) in parsed.iter().enumerate() {
        if let Some(id) = id
            && (store.organizations.contains_key(id) || !ids.insert(id.clone()))
        {
            return Err(seed_error(i, "id already exists"));
        }
        if let Some(external) = &parts.external_id
            && !externals.insert(external.clone())
        {
            return Err(seed_error(i, "external_id is used twice"));
        }
        api::check_seed_conflicts(&store, parts)?;
    }
    let created: Vec<Value> = parsed
        .into_iter()
        .map(|(id, name, parts)| api::insert_organization(&mut store, id, name, parts).to_json())
        .collect();
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "organizations": created }),
    ))
}

fn valid_seed_id(id: &str) -> bool {
    id.strip_prefix("org_")
        .is_some_and(|ulid| ulid::Ulid::from_string(ulid).is_ok())
}

fn seed_error(index: usize, message: &str) -> ApiError {
    ApiError::validation(vec![super::wire::FieldError {
        field: format!("organizations[{index}]"),
        code: message.to_owned(),
    }])
}

/// `GET /_emulator/requests`: requests per route (`"METHOD /template"`), their total, and the
/// most recent requests with the headers a retry policy is judged by.
pub(crate) async fn requests(State(shared): State<Shared>) -> Response {
    let store = shared.store();
    let total: u64 = store.counts.values().sum();
    let recent: Vec<Value> = store
        .recent
        .iter()
        .map(|r| {
            json!({
                "route": r.route,
                "status": r.status,
                "idempotency_key": r.idempotency_key,
                "request_id": r.request_id,
                "traceparent": r.traceparent,
                "user_agent": r.user_agent,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "counts": store.counts, "total": total, "recent": recent }),
    )
}

/// `DELETE /_emulator/requests`: zeroes the counts and the recent log.
pub(crate) async fn clear_requests(State(shared): State<Shared>) -> Response {
    let mut store = shared.store();
    store.counts.clear();
    store.recent.clear();
    json_response(StatusCode::OK, &json!({ "total": 0 }))
}

/// `POST /_emulator/clock` `{"advance_seconds": 301}`: moves the emulator's clock forward, so
/// link expiry and event retention can be tested without waiting.
pub(crate) async fn advance_clock(
    State(shared): State<Shared>,
    JsonObject(body): JsonObject,
) -> ControlResult {
    let mut fields = Fields::new(&body);
    fields.only(&["advance_seconds"]);
    // At most ten years in all, so that no later time arithmetic can overflow.
    const MAX_OFFSET: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
    let seconds = body.get("advance_seconds").and_then(Value::as_u64);
    if seconds.is_none() {
        fields.fail(
            "advance_seconds",
            "advance_seconds must be a non-negative integer",
        );
    }
    let asked = seconds.unwrap_or(0);
    let advance = Duration::from_secs(asked.min(MAX_OFFSET.as_secs()));
    if asked > MAX_OFFSET.as_secs()
        || shared.store().clock_offset.saturating_add(advance) > MAX_OFFSET
    {
        fields.fail(
            "advance_seconds",
            "the emulator's clock may be moved at most ten years ahead in all",
        );
    }
    fields.finish()?;
    let mut store = shared.store();
    store.clock_offset = store.clock_offset.saturating_add(advance).min(MAX_OFFSET);
    let offset = store.clock_offset.as_secs();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "offset_seconds": offset }),
    ))
}

/// `POST /_emulator/idempotency`: `{"replay": true}` makes every POST honour `Idempotency-Key`
/// (the same key and body replay the first answer, another body is a 400), as WorkOS once
/// appeared to; `{"replay": false}`, the default, follows WorkOS's documented rule: the header is
/// accepted and nothing is deduplicated (WorkOS honours it only on audit-log events, which the
/// emulator does not serve).
pub(crate) async fn idempotency(
    State(shared): State<Shared>,
    JsonObject(body): JsonObject,
) -> ControlResult {
    let mut fields = Fields::new(&body);
    fields.only(&["replay"]);
    let replay = body.get("replay").and_then(Value::as_bool);
    if replay.is_none() {
        fields.fail("replay", "replay must be true or false");
    }
    fields.finish()?;
    let replay = replay.unwrap_or(false);
    shared.store().replay_idempotency_keys = replay;
    Ok(json_response(StatusCode::OK, &json!({ "replay": replay })))
}

/// `GET /_emulator/outbox`: every invitation e-mailed since the last reset or clearing, oldest
/// first: `{"messages": [{"to", "subject", "link", "intents", "organization_id", "contact_id",
/// "sent_at", "expires_at", "revoked"}]}`. `intents` are the invitation's own names
/// (`directory_sync`); `revoked` is true once the invitation was revoked or its contact removed.
pub(crate) async fn outbox(State(shared): State<Shared>) -> Response {
    json_response(StatusCode::OK, &shared.store().outbox_json())
}

/// `DELETE /_emulator/outbox`: forgets the messages. The invitations stay, links and all.
pub(crate) async fn clear_outbox(State(shared): State<Shared>) -> Response {
    shared.store().invites.outbox.clear();
    json_response(StatusCode::OK, &json!({ "messages": [] }))
}
