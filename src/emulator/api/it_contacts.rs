//! An organization's IT contacts and their e-mailed Admin Portal invitations: list, create,
//! delete, invite, revoke. The state and the choices where WorkOS is unconfirmed are in
//! `emulator::invites`.
//!
//! Statuses: list 200; create 201 with the contact; invite, revoke and delete 204 with no body
//! (WorkOS's are unconfirmed, and every SDK discards the body). Refusals: 404 `entity_not_found`
//! for an unknown organization or contact (or, on revoke, a contact without the active
//! invitation); 409 `it_contact_already_exists` and `it_contact_invitation_already_active`; 422
//! naming `email` or `intents`.

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use serde_json::Value;

use super::{ApiResult, idempotent, listing::parse_query};
use crate::emulator::{
    Shared,
    invites::{INVITE_INTENTS, InviteError, ItContact, portal_intent},
    wire::{ApiError, Fields, JsonObject, json_response, looks_like_email},
};

/// The longest address accepted (RFC 5321's path limit).
const EMAIL_MAX: usize = 254;

/// The WorkOS answer to a refused call on `organization_id`'s contact `contact_id`.
fn refusal(error: InviteError, organization_id: &str, contact_id: &str) -> ApiError {
    match error {
        InviteError::NoOrganization => ApiError::not_found("Organization", organization_id),
        InviteError::NoContact => ApiError::not_found("IT contact", contact_id),
        InviteError::ContactExists => ApiError::coded(
            StatusCode::CONFLICT,
            "it_contact_already_exists",
            "An IT contact with this email already exists for the organization.",
        ),
        InviteError::InvitationActive => ApiError::coded(
            StatusCode::CONFLICT,
            "it_contact_invitation_already_active",
            format!(
                "Organization {organization_id} already has an active Admin Portal invitation."
            ),
        ),
        InviteError::NoInvitation => {
            ApiError::not_found("Active Admin Portal invitation for IT contact", contact_id)
        }
    }
}

/// `GET /organizations/{id}/it_contacts`, with WorkOS's cursor pagination (the Python SDK sends
/// none of it, so it sees the first ten).
pub(crate) async fn list_it_contacts(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let paging = parse_query(query.as_deref(), |_, _, _| false)?;
    let store = shared.store();
    if !store.organizations.contains_key(&organization_id) {
        return Err(ApiError::not_found("Organization", &organization_id));
    }
    let contacts: Vec<&ItContact> = store
        .invites
        .contacts
        .values()
        .filter(|c| c.organization_id == organization_id)
        .collect();
    let body = paging.page(contacts, |c| c.id.as_str(), |c| c.to_json());
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /organizations/{id}/it_contacts` `{"email"}`: 201 with the contact. No invitation is
/// sent.
pub(crate) async fn create_it_contact(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let mut fields = Fields::new(&body);
    fields.only(&["email"]);
    let email = fields.required_str("email").map(str::to_owned);
    if let Some(email) = &email
        && (email.len() > EMAIL_MAX || !looks_like_email(email))
    {
        fields.fail("email", "email must be an email");
    }
    fields.finish()?;
    let Some(email) = email else {
        return Err(ApiError::validation(Vec::new()));
    };
    idempotent(
        &shared,
        &headers,
        // The path itself, so one key cannot replay across organizations.
        &format!("POST /organizations/{organization_id}/it_contacts"),
        &body,
        |store| match store.add_it_contact(&organization_id, &email) {
            Ok(contact) => Ok((StatusCode::CREATED, contact.to_json())),
            Err(InviteError::ContactExists) => Err(ApiError::coded(
                StatusCode::CONFLICT,
                "it_contact_already_exists",
                format!("An IT contact with the email {email} already exists."),
            )),
            Err(error) => Err(refusal(error, &organization_id, "")),
        },
    )
}

/// `DELETE /organizations/{id}/it_contacts/{contact_id}`: 204; the contact's invitation links
/// stop working.
pub(crate) async fn delete_it_contact(
    State(shared): State<Shared>,
    Path((organization_id, contact_id)): Path<(String, String)>,
) -> ApiResult {
    shared
        .store()
        .delete_it_contact(&organization_id, &contact_id)
        .map_err(|error| refusal(error, &organization_id, &contact_id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /organizations/{id}/it_contacts/{contact_id}/invite` `{"intents": [...]}`: 204; the
/// invitation's link is in the outbox.
pub(crate) async fn invite_it_contact(
    State(shared): State<Shared>,
    Path((organization_id, contact_id)): Path<(String, String)>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let mut fields = Fields::new(&body);
    fields.only(&["intents"]);
    let mut intents: Vec<&'static str> = Vec::new();
    match fields.raw("intents") {
        None | Some(Value::Null) => fields.fail("intents", "intents is required"),
        Some(Value::Array(items)) if items.is_empty() => {
            fields.fail("intents", "intents should not be empty");
        }
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str().and_then(portal_intent) {
                    // Named twice is the same invitation.
                    Some((api, _)) if intents.contains(&api) => {}
                    Some((api, _)) => intents.push(api),
                    None => {
                        let names: Vec<&str> = INVITE_INTENTS.iter().map(|(api, _)| *api).collect();
                        fields.fail(
                            "intents",
                            format!(
                                "each value in intents must be one of the following values: {}",
                                names.join(", ")
                            ),
                        );
                        break;
                    }
                }
            }
        }
        Some(_) => fields.fail("intents", "intents must be an array"),
    }
    fields.finish()?;
    let origin = shared.origin.clone();
    idempotent(
        &shared,
        &headers,
        &format!("POST /organizations/{organization_id}/it_contacts/{contact_id}/invite"),
        &body,
        |store| {
            store
                .invite_it_contact(&origin, &organization_id, &contact_id, intents)
                .map(|()| (StatusCode::NO_CONTENT, Value::Null))
                .map_err(|error| refusal(error, &organization_id, &contact_id))
        },
    )
}

/// `POST /organizations/{id}/it_contacts/{contact_id}/revoke` `{}`: 204; the invitation's link
/// stops working.
pub(crate) async fn revoke_it_contact(
    State(shared): State<Shared>,
    Path((organization_id, contact_id)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> ApiResult {
    let mut fields = Fields::new(&body);
    fields.only(&[]);
    fields.finish()?;
    shared
        .store()
        .revoke_it_contact_invitation(&organization_id, &contact_id)
        .map_err(|error| refusal(error, &organization_id, &contact_id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
