//! The Admin Portal: generate and revoke links.

use std::time::SystemTime;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use serde_json::{Value, json};

use super::{ApiResult, idempotent};
use crate::emulator::{
    Shared,
    state::{LINK_LIFETIME, Link},
    wire::{ApiError, Fields, JsonObject, looks_like_email, looks_like_url},
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

const IT_CONTACTS_MAX: usize = 20;

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
    // WorkOS's reference makes `intent` optional and the Node SDK may send none. What WorkOS's
    // portal shows then is unconfirmed; the emulator's page offers a menu of every intent.
    let intent = fields.optional_str("intent").map(str::to_owned);
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
    let Some(organization) = organization else {
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
                    menu: None,
                    return_url,
                    success_url,
                    external_user_id,
                    issued_at,
                    lifetime: LINK_LIFETIME,
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

/// Whether a link's time is over: five minutes for a link minted here, longer for an
/// invitation's.
pub(crate) fn expired(link: &Link, now: SystemTime) -> bool {
    now.duration_since(link.issued_at)
        .is_ok_and(|age| age >= link.lifetime)
}
