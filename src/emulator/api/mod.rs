//! The WorkOS REST routes the emulator implements: Organizations, Organization Domains, IT
//! contacts and the Admin Portal. Shapes, status codes and error bodies follow the WorkOS API as the official
//! SDKs expect it; where WorkOS's behaviour is unconfirmed the choice is written next to the code.

use std::collections::HashSet;

use axum::{
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value};

mod audit_logs;
mod connections;
mod directories;
mod domains;
mod events;
mod it_contacts;
mod listing;
mod organizations;
mod portal;

pub(crate) use audit_logs::get_audit_log_configuration;
pub(crate) use connections::{delete_connection, get_connection, list_connections};
pub(crate) use directories::{delete_directory, get_directory, list_directories};
pub(crate) use domains::{create_domain, delete_domain, get_domain, verify_domain};
pub(crate) use events::list_events;
pub(crate) use it_contacts::{
    create_it_contact, delete_it_contact, invite_it_contact, list_it_contacts, revoke_it_contact,
};
pub(crate) use organizations::{
    create_organization, delete_organization, get_organization, get_organization_by_external_id,
    list_organizations, update_organization,
};
pub(crate) use portal::{INTENTS, expired, generate_link, revoke_link};

use super::{
    Shared,
    setup::ops,
    state::{Domain, DomainState, IdempotentAnswer, Organization, Store},
    wire::{ApiError, Fields, json_response, looks_like_domain},
};

/// Metadata limits: WorkOS's documentation (10 pairs) is stricter than its OpenAPI spec (50), and
/// the stricter one is enforced so nothing that passes here fails against WorkOS.
const METADATA_MAX_PAIRS: usize = 10;
const METADATA_MAX_KEY: usize = 40;
const METADATA_MAX_VALUE: usize = 600;
/// WorkOS's documentation says 64 characters; its spec says 128. The stricter one is enforced.
const EXTERNAL_ID_MAX: usize = 64;

/// Consumer mail domains WorkOS refuses as organization domains.
const CONSUMER_DOMAINS: [&str; 6] = [
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
];

type ApiResult = Result<Response, ApiError>;

// === Organizations ===

/// What a create or update body asks for, validated.
#[derive(Debug, Default)]
struct OrganizationInput {
    name: Option<String>,
    domains: Option<Vec<(String, DomainState)>>,
    metadata: Option<Map<String, Value>>,
    external_id: Option<Option<String>>,
    stripe_customer_id: Option<Option<String>>,
    allow_profiles_outside_organization: Option<bool>,
}

fn parse_organization(
    body: &Map<String, Value>,
    create: bool,
) -> Result<OrganizationInput, ApiError> {
    let mut fields = Fields::new(body);
    let mut allowed = vec![
        "name",
        "domains",
        "domain_data",
        "metadata",
        "external_id",
        "allow_profiles_outside_organization",
    ];
    if !create {
        allowed.push("stripe_customer_id");
    }
    fields.only(&allowed);
    let mut input = OrganizationInput::default();
    if create || fields.has("name") {
        input.name = fields.required_str("name").map(str::to_owned);
    }
    let mut domains: Option<Vec<(String, DomainState)>> = None;
    if let Some(legacy) = fields.optional_strings("domains") {
        domains.get_or_insert_with(Vec::new).extend(
            legacy
                .into_iter()
                .map(|d| (d.to_ascii_lowercase(), DomainState::LegacyVerified)),
        );
    }
    match fields.raw("domain_data") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let list = domains.get_or_insert_with(Vec::new);
            for (i, item) in items.iter().enumerate() {
                let domain = item.get("domain").and_then(Value::as_str);
                let state = match item.get("state").and_then(Value::as_str) {
                    Some("pending") => Some(DomainState::Pending),
                    Some("verified") => Some(DomainState::Verified),
                    _ => None,
                };
                match (domain, state) {
                    (Some(domain), Some(state)) => list.push((domain.to_ascii_lowercase(), state)),
                    (None, _) => fields.fail(
                        &format!("domain_data[{i}].domain"),
                        "domain must be a string",
                    ),
                    (_, None) => fields.fail(
                        &format!("domain_data[{i}].state"),
                        "state must be one of the following values: pending, verified",
                    ),
                }
            }
        }
        Some(_) => fields.fail("domain_data", "domain_data must be an array"),
    }
    if let Some(list) = &domains {
        let mut seen = HashSet::new();
        for (domain, _) in list {
            if !looks_like_domain(domain) {
                fields.fail("domain_data", format!("{domain} is not a valid domain"));
            } else if CONSUMER_DOMAINS.contains(&domain.as_str()) {
                fields.fail("domain_data", format!("{domain} is a consumer domain"));
            } else if !seen.insert(domain.clone()) {
                fields.fail("domain_data", format!("{domain} is listed twice"));
            }
        }
    }
    input.domains = domains;
    if fields.has("external_id") {
        let external_id = fields.optional_str("external_id");
        if let Some(id) = external_id
            && (id.is_empty()
                || id.len() > EXTERNAL_ID_MAX
                || !id.chars().all(|c| c == ' ' || c.is_ascii_graphic()))
        {
            fields.fail(
                "external_id",
                format!("external_id must be 1 to {EXTERNAL_ID_MAX} printable ASCII characters"),
            );
        }
        input.external_id = Some(external_id.map(str::to_owned));
    }
    if fields.has("stripe_customer_id") {
        input.stripe_customer_id =
            Some(fields.optional_str("stripe_customer_id").map(str::to_owned));
    }
    input.allow_profiles_outside_organization =
        fields.optional_bool("allow_profiles_outside_organization");
    let metadata = fields.raw("metadata").cloned();
    fields.finish()?;
    // Metadata problems are a 400 `invalid_metadata`, WorkOS's own code for them.
    match metadata {
        None => {}
        Some(Value::Null) => input.metadata = Some(Map::new()),
        Some(Value::Object(map)) => {
            if map.len() > METADATA_MAX_PAIRS {
                return Err(invalid_metadata(format!(
                    "metadata may hold at most {METADATA_MAX_PAIRS} keys"
                )));
            }
            for (key, value) in &map {
                if key.is_empty() || key.len() > METADATA_MAX_KEY || !key.is_ascii() {
                    return Err(invalid_metadata(format!(
                        "metadata keys must be 1 to {METADATA_MAX_KEY} ASCII characters"
                    )));
                }
                match value {
                    Value::String(v) if v.len() <= METADATA_MAX_VALUE && v.is_ascii() => {}
                    Value::String(_) => {
                        return Err(invalid_metadata(format!(
                            "metadata value for {key} must be at most {METADATA_MAX_VALUE} ASCII characters"
                        )));
                    }
                    _ => {
                        return Err(invalid_metadata(format!(
                            "metadata value for {key} must be a string"
                        )));
                    }
                }
            }
            input.metadata = Some(map);
        }
        Some(_) => return Err(invalid_metadata("metadata must be an object".into())),
    }
    Ok(input)
}

fn invalid_metadata(message: String) -> ApiError {
    ApiError::coded(StatusCode::BAD_REQUEST, "invalid_metadata", message)
}

/// Checks the uniqueness rules an input must meet against everyone but `organization_id`.
fn check_conflicts(
    store: &Store,
    input: &OrganizationInput,
    organization_id: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(Some(external_id)) = &input.external_id
        && let Some(owner) = store.by_external_id.get(external_id)
        && Some(owner.as_str()) != organization_id
    {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "external_id_already_used",
            format!("An organization with external id {external_id} already exists."),
        ));
    }
    if let Some(Some(stripe)) = &input.stripe_customer_id
        && store.organizations.values().any(|o| {
            o.stripe_customer_id.as_deref() == Some(stripe.as_str())
                && Some(o.id.as_str()) != organization_id
        })
    {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "stripe_customer_id_already_used",
            format!("An organization with Stripe customer id {stripe} already exists."),
        ));
    }
    for (domain, _) in input.domains.iter().flatten() {
        if let Some(owner) = store.domain_owner.get(domain)
            && Some(owner.as_str()) != organization_id
        {
            return Err(ApiError::coded(
                StatusCode::CONFLICT,
                "domain_already_exists",
                format!("An Organization with the domain {domain} already exists."),
            ));
        }
    }
    Ok(())
}

/// Creates an organization from a validated input. Used by the API and by the control API's seed.
pub(crate) fn insert_organization(
    store: &mut Store,
    id: Option<String>,
    name: String,
    input: OrganizationInputParts,
) -> Organization {
    let now = store.now();
    let id = id.unwrap_or_else(|| store.new_id("org_"));
    let domains: Vec<Domain> = input
        .domains
        .iter()
        .map(|(domain, state)| store.new_domain(&id, domain, *state))
        .collect();
    let organization = Organization {
        id: id.clone(),
        name,
        domains,
        metadata: input.metadata,
        external_id: input.external_id,
        stripe_customer_id: None,
        allow_profiles_outside_organization: input.allow_profiles_outside_organization,
        created_at: now,
        updated_at: now,
    };
    for domain in &organization.domains {
        store.domain_owner.insert(domain.domain.clone(), id.clone());
    }
    if let Some(external_id) = &organization.external_id {
        store.by_external_id.insert(external_id.clone(), id.clone());
    }
    store.organizations.insert(id, organization.clone());
    for domain in &organization.domains {
        ops::announce_new_domain(store, domain);
    }
    organization
}

/// The parts of a new organization besides its id and name.
#[derive(Debug, Default)]
pub(crate) struct OrganizationInputParts {
    pub(crate) domains: Vec<(String, DomainState)>,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) external_id: Option<String>,
    pub(crate) allow_profiles_outside_organization: bool,
}

/// Validates a seed organization for the control API with the same rules as the API.
pub(crate) fn parse_seed_organization(
    body: &Map<String, Value>,
) -> Result<(String, OrganizationInputParts), ApiError> {
    let input = parse_organization(body, true)?;
    Ok((
        input.name.unwrap_or_default(),
        OrganizationInputParts {
            domains: input.domains.unwrap_or_default(),
            metadata: input.metadata.unwrap_or_default(),
            external_id: input.external_id.flatten(),
            allow_profiles_outside_organization: input
                .allow_profiles_outside_organization
                .unwrap_or(false),
        },
    ))
}

/// Checks a seed organization's uniqueness rules.
pub(crate) fn check_seed_conflicts(
    store: &Store,
    parts: &OrganizationInputParts,
) -> Result<(), ApiError> {
    let input = OrganizationInput {
        domains: Some(parts.domains.clone()),
        external_id: Some(parts.external_id.clone()),
        ..OrganizationInput::default()
    };
    check_conflicts(store, &input, None)
}

/// Runs a POST under WorkOS's idempotency rules. As documented, WorkOS honours `Idempotency-Key`
/// only on audit-log events, so by default the key is accepted and nothing is deduplicated. With
/// replay switched on (`POST /_emulator/idempotency`), the same key and body replay the first
/// answer and the same key with a different body is a 400; the whole check-run-remember
/// sequence holds the lock, so two concurrent requests with one key cannot both run. A 204
/// answers no body.
fn idempotent(
    shared: &Shared,
    headers: &HeaderMap,
    route: &str,
    body: &Map<String, Value>,
    run: impl FnOnce(&mut Store) -> Result<(StatusCode, Value), ApiError>,
) -> ApiResult {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let mut store = shared.store();
    let Some(key) = key.filter(|_| store.replay_idempotency_keys) else {
        let (status, value) = run(&mut store)?;
        return Ok(respond(status, &value));
    };
    let request = Value::Object(body.clone());
    if let Some(answer) = store.idempotent_answer(&key) {
        if answer.route == route && answer.request == request {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            return Ok(respond(status, &answer.response));
        }
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "idempotency_key_reused",
            format!(
                "Another idempotency key ({key}) with different request parameters was found. \
                 Please use a different idempotency key."
            ),
        ));
    }
    let (status, value) = run(&mut store)?;
    let stored_at = store.now();
    store.idempotency.insert(
        key,
        IdempotentAnswer {
            route: route.to_owned(),
            request,
            status: status.as_u16(),
            response: value.clone(),
            stored_at,
        },
    );
    Ok(respond(status, &value))
}

fn respond(status: StatusCode, body: &Value) -> Response {
    if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        json_response(status, body)
    }
}
