//! `POST /_emulator/organizations/{id}/setup`: any Admin Portal setup step without a browser,
//! with the same state changes and events as the portal's forms, plus the failure paths a
//! browser cannot produce (a broken directory, a failed domain, a log stream in error).
//!
//! The body names the intent and the action, plus the action's own fields:
//!
//! | intent | action | fields |
//! |---|---|---|
//! | `sso` | `configure`, `activate`, `deactivate`, `delete` | `provider` (configure, activate), `connection_id` (the others) |
//! | `dsync` | `activate`, `invalid_credentials`, `unlink`, `delete` | `provider` (activate), `directory_id` (the others) |
//! | `domain_verification` | `verify`, `fail` | `domain` (required), `reason` (fail) |
//! | `log_streams` | `create`, `error`, `delete` | `destination` (create, required) |
//! | `audit_logs` | `enable`, `disable` | |
//! | `certificate_renewal` | `renewal_required`, `renewed` | `connection_id`, `certificate_type`, `days_until_expiry` (renewal_required) |
//! | `bring_your_own_key` | `verify`, `delete` | `key_provider`, `verified` (verify) |
//!
//! The answer is 200 `{"organization_id", "intent", "action", "events": [ids], <changed>}`
//! where `<changed>` is one of `connection`, `directory`, `organization_domain`,
//! `audit_log_configuration`, `bring_your_own_key` (the object after the change) or `deleted`
//! (`{"object", "id"}`). Refusals: 404 for an unknown organization, 422 naming a bad field
//! (an unknown intent or action included), 409 `setup_conflict` when the organization's setup
//! is not in a state the step applies to.

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use serde_json::{Value, json};

use super::ControlResult;
use crate::emulator::{
    Shared,
    setup::{
        AuditState, CONNECTION_TYPES, DIRECTORY_TYPES, DirectoryState, KEY_PROVIDERS,
        LOG_STREAM_TYPES,
        ops::{self, Outcome, SetupError},
    },
    state::Store,
    wire::{ApiError, FieldError, Fields, JsonObject, json_response},
};

/// An action and the fields it takes.
type Action = (&'static str, &'static [&'static str]);

/// Each intent's actions.
const ACTIONS: [(&str, &[Action]); 7] = [
    (
        "sso",
        &[
            ("configure", &["provider"]),
            ("activate", &["connection_id", "provider"]),
            ("deactivate", &["connection_id"]),
            ("delete", &["connection_id"]),
        ],
    ),
    (
        "dsync",
        &[
            ("activate", &["provider"]),
            ("invalid_credentials", &["directory_id"]),
            ("unlink", &["directory_id"]),
            ("delete", &["directory_id"]),
        ],
    ),
    (
        "domain_verification",
        &[("verify", &["domain"]), ("fail", &["domain", "reason"])],
    ),
    (
        "log_streams",
        &[
            ("create", &["destination"]),
            ("error", &[]),
            ("delete", &[]),
        ],
    ),
    ("audit_logs", &[("enable", &[]), ("disable", &[])]),
    (
        "certificate_renewal",
        &[
            (
                "renewal_required",
                &["connection_id", "certificate_type", "days_until_expiry"],
            ),
            ("renewed", &["connection_id", "certificate_type"]),
        ],
    ),
    (
        "bring_your_own_key",
        &[("verify", &["key_provider", "verified"]), ("delete", &[])],
    ),
];

const CERTIFICATE_TYPES: [&str; 3] = ["ResponseSigning", "RequestSigning", "ResponseEncryption"];
const FAILURE_REASONS: [&str; 2] = [
    "domain_verification_period_expired",
    "domain_verified_by_other_organization",
];
/// WorkOS warns about a certificate from 90 days before it expires.
const MAX_DAYS_UNTIL_EXPIRY: u64 = 90;

pub(crate) async fn setup(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
    JsonObject(body): JsonObject,
) -> ControlResult {
    let mut fields = Fields::new(&body);
    let intent = fields.required_str("intent").unwrap_or_default();
    let action = fields.required_str("action").unwrap_or_default();
    let actions = ACTIONS.iter().find(|(name, _)| *name == intent);
    let params = match actions {
        None if !intent.is_empty() => {
            let names: Vec<&str> = ACTIONS.iter().map(|(name, _)| *name).collect();
            fields.fail(
                "intent",
                format!(
                    "intent must be one of the following values: {}",
                    names.join(", ")
                ),
            );
            None
        }
        None => None,
        Some((_, actions)) => match actions.iter().find(|(name, _)| *name == action) {
            Some((_, params)) => Some(*params),
            None => {
                if !action.is_empty() {
                    let names: Vec<&str> = actions.iter().map(|(name, _)| *name).collect();
                    fields.fail(
                        "action",
                        format!(
                            "action for {intent} must be one of the following values: {}",
                            names.join(", ")
                        ),
                    );
                }
                None
            }
        },
    };
    // Only a known action's fields can be judged.
    let Some(params) = params else {
        return Err(fields.finish().err().unwrap_or_else(|| {
            ApiError::validation(vec![FieldError {
                field: "action".into(),
                code: "action is required".into(),
            }])
        }));
    };
    let mut allowed = vec!["intent", "action"];
    allowed.extend_from_slice(params);
    fields.only(&allowed);
    let input = Input::parse(&mut fields);
    fields.finish()?;
    let mut store = shared.store();
    let outcome = run(&mut store, &organization_id, intent, action, &input)
        .map_err(|e| refusal(e, &organization_id))?;
    let mut answer = json!({
        "organization_id": organization_id,
        "intent": intent,
        "action": action,
        "events": outcome.events,
    });
    let (key, changed) = outcome.changed;
    if let Value::Object(map) = &mut answer {
        map.insert(key.to_owned(), changed);
    }
    Ok(json_response(StatusCode::OK, &answer))
}

/// Every field an action may take, each checked against what it may hold.
#[derive(Debug, Default)]
struct Input<'a> {
    provider: Option<&'a str>,
    connection_id: Option<&'a str>,
    directory_id: Option<&'a str>,
    domain: Option<&'a str>,
    reason: Option<&'static str>,
    destination: Option<&'a str>,
    certificate_type: Option<&'static str>,
    days_until_expiry: Option<u64>,
    key_provider: Option<&'static str>,
    verified: Option<bool>,
}

impl<'a> Input<'a> {
    fn parse(fields: &mut Fields<'a>) -> Self {
        let provider = fields.optional_str("provider");
        let reason = one_of(fields, "reason", &FAILURE_REASONS);
        let certificate_type = one_of(fields, "certificate_type", &CERTIFICATE_TYPES);
        let key_provider = one_of(fields, "key_provider", &KEY_PROVIDERS);
        let days_until_expiry = match fields.raw("days_until_expiry") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64() {
                Some(days) if days <= MAX_DAYS_UNTIL_EXPIRY => Some(days),
                _ => {
                    fields.fail(
                        "days_until_expiry",
                        format!(
                            "days_until_expiry must be an integer from 0 to {MAX_DAYS_UNTIL_EXPIRY}"
                        ),
                    );
                    None
                }
            },
        };
        Self {
            provider,
            connection_id: fields.optional_str("connection_id"),
            directory_id: fields.optional_str("directory_id"),
            domain: fields.optional_str("domain"),
            reason,
            destination: fields.optional_str("destination"),
            certificate_type,
            days_until_expiry,
            key_provider,
            verified: fields.optional_bool("verified"),
        }
    }
}

/// An optional string that must be one of `values`.
fn one_of(fields: &mut Fields<'_>, field: &str, values: &[&'static str]) -> Option<&'static str> {
    let value = fields.optional_str(field)?;
    let found = values.iter().copied().find(|v| *v == value);
    if found.is_none() {
        fields.fail(
            field,
            format!(
                "{field} must be one of the following values: {}",
                values.join(", ")
            ),
        );
    }
    found
}

/// A value that must be in `values`, or the default.
fn choose(
    value: Option<&str>,
    field: &'static str,
    values: &[&str],
    default: &str,
) -> Result<String, SetupError> {
    let value = value.unwrap_or(default);
    if values.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(SetupError::Invalid(
            field,
            format!(
                "{field} must be one of the following values: {}",
                values.join(", ")
            ),
        ))
    }
}

fn required<'a>(value: Option<&'a str>, field: &'static str) -> Result<&'a str, SetupError> {
    value.ok_or_else(|| SetupError::Invalid(field, format!("{field} is required")))
}

fn run(
    store: &mut Store,
    organization: &str,
    intent: &str,
    action: &str,
    input: &Input<'_>,
) -> Result<Outcome, SetupError> {
    let certificate = input.certificate_type.unwrap_or("ResponseSigning");
    match (intent, action) {
        ("sso", "configure") => {
            let provider = choose(input.provider, "provider", &CONNECTION_TYPES, "GenericSAML")?;
            ops::configure_connection(store, organization, &provider)
        }
        ("sso", "activate") => {
            let provider = choose(input.provider, "provider", &CONNECTION_TYPES, "GenericSAML")?;
            ops::activate_connection(store, organization, input.connection_id, &provider)
        }
        ("sso", "deactivate") => {
            ops::deactivate_connection(store, organization, input.connection_id)
        }
        ("sso", "delete") => {
            ops::delete_organization_connection(store, organization, input.connection_id)
        }
        ("dsync", "activate") => {
            let provider = choose(
                input.provider,
                "provider",
                &DIRECTORY_TYPES,
                "generic scim v2.0",
            )?;
            ops::activate_directory(store, organization, &provider)
        }
        ("dsync", "invalid_credentials") => ops::set_directory_state(
            store,
            organization,
            input.directory_id,
            DirectoryState::InvalidCredentials,
        ),
        ("dsync", "unlink") => ops::set_directory_state(
            store,
            organization,
            input.directory_id,
            DirectoryState::Unlinked,
        ),
        ("dsync", "delete") => {
            ops::delete_organization_directory(store, organization, input.directory_id)
        }
        ("domain_verification", "verify") => {
            ops::verify_domain(store, organization, required(input.domain, "domain")?)
        }
        ("domain_verification", "fail") => ops::fail_domain(
            store,
            organization,
            required(input.domain, "domain")?,
            input.reason.unwrap_or(FAILURE_REASONS[0]),
        ),
        ("log_streams", "create") => {
            let destination = required(input.destination, "destination")?;
            let destination = choose(Some(destination), "destination", &LOG_STREAM_TYPES, "")?;
            ops::create_log_stream(store, organization, &destination)
        }
        ("log_streams", "error") => ops::log_stream_error(store, organization),
        ("log_streams", "delete") => ops::delete_log_stream(store, organization),
        ("audit_logs", "enable") => ops::set_audit_state(store, organization, AuditState::Active),
        ("audit_logs", "disable") => {
            ops::set_audit_state(store, organization, AuditState::Disabled)
        }
        ("certificate_renewal", "renewal_required") => ops::certificate_renewal_required(
            store,
            organization,
            input.connection_id,
            certificate,
            input.days_until_expiry.unwrap_or(30),
        ),
        ("certificate_renewal", "renewed") => {
            ops::certificate_renewed(store, organization, input.connection_id, certificate)
        }
        ("bring_your_own_key", "verify") => ops::byok_verification(
            store,
            organization,
            input.key_provider.unwrap_or("AWS_KMS"),
            input.verified.unwrap_or(true),
        ),
        ("bring_your_own_key", "delete") => ops::byok_delete(store, organization),
        _ => Err(SetupError::Invalid(
            "action",
            format!("unknown action {action}"),
        )),
    }
}

/// A refused step as the control API answers it.
fn refusal(error: SetupError, organization_id: &str) -> ApiError {
    match error {
        SetupError::NoOrganization => ApiError::not_found("Organization", organization_id),
        SetupError::Invalid(field, code) => ApiError::validation(vec![FieldError {
            field: field.to_owned(),
            code,
        }]),
        SetupError::Conflict(message) => {
            ApiError::coded(StatusCode::CONFLICT, "setup_conflict", message)
        }
    }
}
