//! The WorkOS REST routes the emulator implements: Organizations, Organization Domains and the
//! Admin Portal. Shapes, status codes and error bodies follow the WorkOS API as the official
//! SDKs expect it; where WorkOS's behaviour is unconfirmed the choice is written next to the code.

use std::{collections::HashSet, time::SystemTime};

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{
    Shared,
    state::{Domain, DomainState, IdempotentAnswer, Link, Organization, Store},
    wire::{
        ApiError, Fields, JsonObject, json_response, looks_like_domain, looks_like_email,
        looks_like_url,
    },
};

/// The seven Admin Portal intents WorkOS accepts.
pub(crate) const INTENTS: [&str; 7] = [
    "sso",
    "dsync",
    "audit_logs",
    "log_streams",
    "domain_verification",
    "certificate_renewal",
    "bring_your_own_key",
];

/// Metadata limits: WorkOS's documentation (10 pairs) is stricter than its OpenAPI spec (50), and
/// the stricter one is enforced so nothing that passes here fails against WorkOS.
const METADATA_MAX_PAIRS: usize = 10;
const METADATA_MAX_KEY: usize = 40;
const METADATA_MAX_VALUE: usize = 600;
/// WorkOS's documentation says 64 characters; its spec says 128. The stricter one is enforced.
const EXTERNAL_ID_MAX: usize = 64;
const IT_CONTACTS_MAX: usize = 20;

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
    if let Some(domains) = new_domains {
        for old in &organization.domains {
            store.domain_owner.remove(&old.domain);
        }
        for domain in &domains {
            store.domain_owner.insert(domain.domain.clone(), id.clone());
        }
        organization.domains = domains;
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
    store.organizations.insert(id, organization);
    Ok(json_response(StatusCode::OK, &body))
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
    let mut fields_errors = Vec::new();
    let mut limit = 10usize;
    let mut order = "desc".to_owned();
    let mut before = None;
    let mut after = None;
    let mut search = None;
    let mut domains: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => fields_errors.push((
                    "limit",
                    "limit must be a number between 1 and 100".to_owned(),
                )),
            },
            "order" => match value.as_ref() {
                "asc" | "desc" | "normal" => order = value.into_owned(),
                _ => fields_errors.push((
                    "order",
                    "order must be one of the following values: asc, desc, normal".to_owned(),
                )),
            },
            "before" if !value.is_empty() => before = Some(value.into_owned()),
            "after" if !value.is_empty() => after = Some(value.into_owned()),
            "before" | "after" => {}
            "search" => search = Some(value.to_lowercase()),
            // SDKs disagree: comma-joined (Python, Node), repeated (Go, Ruby) or `domains[]`.
            "domains" | "domains[]" => domains.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_ascii_lowercase),
            ),
            other => fields_errors.push(("query", format!("property {other} should not exist"))),
        }
    }
    if before.is_some() && after.is_some() {
        fields_errors.push(("before", "before and after cannot both be set".to_owned()));
    }
    if !fields_errors.is_empty() {
        return Err(ApiError::validation(
            fields_errors
                .into_iter()
                .map(|(field, code)| super::wire::FieldError {
                    field: field.to_owned(),
                    code,
                })
                .collect(),
        ));
    }
    // `normal` is descending with the meaning of the cursors swapped.
    if order == "normal" {
        std::mem::swap(&mut before, &mut after);
    }
    let store = shared.store();
    let mut matching: Vec<&Organization> = store
        .organizations
        .values()
        .filter(|o| domains.is_empty() || o.domains.iter().any(|d| domains.contains(&d.domain)))
        .filter(|o| {
            search
                .as_ref()
                .is_none_or(|s| o.name.to_lowercase().contains(s))
        })
        .collect();
    matching.sort_by(|a, b| a.id.cmp(&b.id));
    if order != "asc" {
        matching.reverse();
    }
    // `position` of the first item strictly after the cursor in the chosen order.
    let ascending = order == "asc";
    let follows = |o: &Organization, cursor: &str| {
        if ascending {
            o.id.as_str() > cursor
        } else {
            o.id.as_str() < cursor
        }
    };
    let (start, end) = if let Some(cursor) = &after {
        let start = matching
            .iter()
            .position(|o| follows(o, cursor))
            .unwrap_or(matching.len());
        (start, (start + limit).min(matching.len()))
    } else if let Some(cursor) = &before {
        // Items before the cursor form a prefix of the ordered list.
        let end = matching
            .iter()
            .position(|o| o.id == *cursor || follows(o, cursor))
            .unwrap_or(matching.len());
        (end.saturating_sub(limit), end)
    } else {
        (0, limit.min(matching.len()))
    };
    let page = &matching[start..end];
    let mut meta_before = (start > 0)
        .then(|| page.first().map(|o| o.id.clone()))
        .flatten();
    let mut meta_after = (end < matching.len())
        .then(|| page.last().map(|o| o.id.clone()))
        .flatten();
    if order == "normal" {
        std::mem::swap(&mut meta_before, &mut meta_after);
    }
    let body = json!({
        "object": "list",
        "data": page.iter().map(|o| o.to_json()).collect::<Vec<_>>(),
        "list_metadata": { "before": meta_before, "after": meta_after },
    });
    Ok(json_response(StatusCode::OK, &body))
}

// === Organization domains ===

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

pub(crate) async fn generate_link(
    State(shared): State<Shared>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let mut fields = Fields::new(&body);
    fields.only(&[
        "organization",
        "intent",
        "return_url",
        "success_url",
        "external_user_id",
        "it_contact_emails",
        "admin_emails",
        "intent_options",
    ]);
    let organization = fields.required_str("organization").map(str::to_owned);
    // The current spec makes `intent` optional; what WorkOS does without one is unconfirmed, so
    // the emulator requires it, as WorkOS's own emulator does, to catch clients that omit it.
    let intent = fields.required_str("intent").map(str::to_owned);
    if let Some(intent) = &intent
        && !INTENTS.contains(&intent.as_str())
    {
        fields.fail(
            "intent",
            format!(
                "intent must be one of the following values: {}",
                INTENTS.join(", ")
            ),
        );
    }
    let mut urls = [None, None];
    for (slot, field) in urls.iter_mut().zip(["return_url", "success_url"]) {
        if let Some(url) = fields.optional_str(field) {
            if looks_like_url(url) {
                *slot = Some(url.to_owned());
            } else {
                fields.fail(field, format!("{field} must be a URL address"));
            }
        }
    }
    let external_user_id = fields.optional_str("external_user_id").map(str::to_owned);
    for field in ["it_contact_emails", "admin_emails"] {
        if let Some(emails) = fields.optional_strings(field) {
            if emails.len() > IT_CONTACTS_MAX {
                fields.fail(
                    field,
                    format!("{field} must contain no more than {IT_CONTACTS_MAX} elements"),
                );
            }
            if emails.iter().any(|e| !looks_like_email(e)) {
                fields.fail(field, format!("each value in {field} must be an email"));
            }
        }
    }
    match fields.raw("intent_options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => {
            if let Some(provider) = options.get("sso").and_then(|s| s.get("provider_type"))
                && provider != "GoogleSAML"
            {
                fields.fail(
                    "intent_options.sso.provider_type",
                    "provider_type must be GoogleSAML",
                );
            }
        }
        Some(_) => fields.fail("intent_options", "intent_options must be an object"),
    }
    fields.finish()?;
    let (Some(organization), Some(intent)) = (organization, intent) else {
        return Err(ApiError::validation(Vec::new()));
    };
    let [return_url, success_url] = urls;
    let origin = shared.origin.clone();
    idempotent(
        &shared,
        &headers,
        "POST /portal/generate_link",
        &body,
        move |store| {
            if !store.organizations.contains_key(&organization) {
                return Err(ApiError::not_found("Organization", &organization));
            }
            let token = store.token(43);
            let link = format!("{origin}/portal/launch?secret={token}");
            let issued_at = store.now();
            store.insert_link(
                token,
                Link {
                    organization_id: organization,
                    intent,
                    return_url,
                    success_url,
                    external_user_id,
                    issued_at,
                    revoked: false,
                },
            );
            Ok((StatusCode::CREATED, json!({ "link": link })))
        },
    )
}

/// `POST /portal/revoke_link`. WorkOS's success status is unconfirmed; the emulator answers
/// 204, and every SDK discards the body.
pub(crate) async fn revoke_link(
    State(shared): State<Shared>,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let mut fields = Fields::new(&body);
    fields.only(&["organization", "external_user_id"]);
    let organization = fields.required_str("organization").map(str::to_owned);
    let external_user_id = fields.required_str("external_user_id").map(str::to_owned);
    fields.finish()?;
    let (Some(organization), Some(external_user_id)) = (organization, external_user_id) else {
        return Err(ApiError::validation(Vec::new()));
    };
    let mut store = shared.store();
    if !store.organizations.contains_key(&organization) {
        return Err(ApiError::not_found("Organization", &organization));
    }
    for link in store.links.values_mut() {
        if link.organization_id == organization
            && link.external_user_id.as_deref() == Some(&external_user_id)
        {
            link.revoked = true;
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === Idempotency ===

/// Runs a POST under WorkOS's idempotency rules: the same key and body replay the first answer;
/// the same key with a different body is a 400. The whole check-run-remember sequence holds the
/// lock, so two concurrent requests with one key cannot both run.
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
    let Some(key) = key else {
        let (status, value) = run(&mut store)?;
        return Ok(json_response(status, &value));
    };
    let request = Value::Object(body.clone());
    if let Some(answer) = store.idempotent_answer(&key) {
        if answer.route == route && answer.request == request {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            return Ok(json_response(status, &answer.response));
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
    Ok(json_response(status, &value))
}

/// Whether a link's five minutes are over.
pub(crate) fn expired(link: &Link, now: SystemTime) -> bool {
    now.duration_since(link.issued_at)
        .is_ok_and(|age| age >= super::state::LINK_LIFETIME)
}
