//! What the portal's forms do when submitted. Each checks the link again (a link that expired or
//! was revoked while the page was open stops working), checks that the link may run this
//! intent, validates the form, and then makes the same state change as the control API.
//! A finished flow answers 303 to the link's success URL; a step within a flow (configuring
//! SSO, adding a domain) answers 303 back to the flow's page; a refused form is shown again with
//! the reason above it.

use axum::{
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{Form, Refusal, Session, render};
use crate::emulator::{
    Shared,
    setup::{
        KEY_PROVIDERS, PORTAL_DSYNC_PROVIDERS, PORTAL_LOG_STREAM_TYPES, PORTAL_SSO_PROVIDERS,
        ops::{self, Outcome, SetupError},
    },
    state::Store,
    wire::{looks_like_domain, looks_like_url},
};

/// Where a successful step sends the admin.
enum Next {
    /// Back to the flow's page, for the next step.
    Page,
    /// On to the link's success URL: the flow is done.
    Finish,
}

/// Runs one form submission for `intent`: opens the link, checks the intent, then `step`.
fn submit(
    shared: &Shared,
    body: &Bytes,
    intent: &'static str,
    step: impl FnOnce(&mut Store, &str, &Form) -> Result<(Outcome, Next), SetupError>,
) -> Response {
    let form = Form::parse(body);
    let mut store = shared.store();
    let session = match Session::open(&store, form.get("secret").unwrap_or_default()) {
        Ok(session) => session,
        Err(page) => return *page,
    };
    if session.intent(Some(intent)) != Some(intent) {
        return super::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "<p>This Admin Portal link was minted for another setup step.</p>",
        );
    }
    let organization_id = session.link.organization_id.clone();
    match step(&mut store, &organization_id, &form) {
        Ok((_, Next::Page)) => see_other(&session.launch_url(Some(intent))),
        Ok((_, Next::Finish)) => see_other(&session.finish_url(&shared.origin)),
        Err(error) => {
            let (status, message) = match error {
                SetupError::NoOrganization => (
                    StatusCode::NOT_FOUND,
                    "The organization no longer exists.".to_owned(),
                ),
                SetupError::Invalid(_, message) => (StatusCode::UNPROCESSABLE_ENTITY, message),
                SetupError::Conflict(message) => (StatusCode::CONFLICT, message),
            };
            render(
                shared,
                &store,
                &session,
                Some(intent),
                Some(Refusal { status, message }),
                &form,
            )
        }
    }
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The form's `field`, which must be one of the `(value, label)` options offered.
fn offered<'a>(
    form: &'a Form,
    field: &'static str,
    options: &[(&str, &str)],
    what: &str,
) -> Result<&'a str, SetupError> {
    form.get(field)
        .filter(|value| options.iter().any(|(offered, _)| offered == value))
        .ok_or_else(|| SetupError::Invalid(field, format!("Choose {what} from the list.")))
}

/// `POST /portal/sso`: a new connection, `validating` until the test sign-in.
pub(crate) async fn configure_sso(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(&shared, &body, "sso", |store, organization_id, form| {
        let provider = offered(
            form,
            "provider",
            &PORTAL_SSO_PROVIDERS,
            "an identity provider",
        )?;
        let url = form.get("metadata_url").unwrap_or_default();
        if !looks_like_url(url) {
            return Err(SetupError::Invalid(
                "metadata_url",
                "The metadata URL must be an absolute http:// or https:// URL, such as \
                 https://idp.example.com/saml/metadata.xml."
                    .to_owned(),
            ));
        }
        Ok((
            ops::configure_connection(store, organization_id, provider)?,
            Next::Page,
        ))
    })
}

/// `POST /portal/sso/test`: the test sign-in succeeds; the connection becomes `active`.
pub(crate) async fn test_sign_in(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(&shared, &body, "sso", |store, organization_id, form| {
        let Some(connection_id) = form.get("connection_id") else {
            return Err(SetupError::Invalid(
                "connection_id",
                "Configure a connection before testing it.".to_owned(),
            ));
        };
        Ok((
            ops::activate_connection(store, organization_id, Some(connection_id), "GenericSAML")?,
            Next::Finish,
        ))
    })
}

/// `POST /portal/dsync`: the directory is connected (`linked`).
pub(crate) async fn connect_directory(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(&shared, &body, "dsync", |store, organization_id, form| {
        let provider = offered(
            form,
            "provider",
            &PORTAL_DSYNC_PROVIDERS,
            "a directory provider",
        )?;
        Ok((
            ops::activate_directory(store, organization_id, provider)?,
            Next::Finish,
        ))
    })
}

/// `POST /portal/domain_verification`: adds a pending domain.
pub(crate) async fn add_domain(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(
        &shared,
        &body,
        "domain_verification",
        |store, organization_id, form| {
            let domain = form
                .get("domain")
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if !looks_like_domain(&domain) {
                return Err(SetupError::Invalid(
                    "domain",
                    "Enter a domain name such as example.com.".to_owned(),
                ));
            }
            Ok((
                ops::add_domain(store, organization_id, &domain)?,
                Next::Page,
            ))
        },
    )
}

/// `POST /portal/domain_verification/verify`: the DNS record is found; the domain is verified.
pub(crate) async fn verify_domain(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(
        &shared,
        &body,
        "domain_verification",
        |store, organization_id, form| {
            let domain = form.get("domain").unwrap_or_default();
            Ok((
                ops::verify_domain(store, organization_id, domain)?,
                Next::Finish,
            ))
        },
    )
}

/// `POST /portal/log_streams`: the log stream is created `active`.
pub(crate) async fn create_log_stream(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(
        &shared,
        &body,
        "log_streams",
        |store, organization_id, form| {
            let destination = offered(
                form,
                "destination",
                &PORTAL_LOG_STREAM_TYPES,
                "a destination",
            )?;
            Ok((
                ops::create_log_stream(store, organization_id, destination)?,
                Next::Finish,
            ))
        },
    )
}

/// `POST /portal/certificate_renewal`: the renewed certificate is uploaded.
pub(crate) async fn renew_certificate(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(
        &shared,
        &body,
        "certificate_renewal",
        |store, organization_id, _| {
            Ok((
                ops::certificate_renewed(store, organization_id, None, "ResponseSigning")?,
                Next::Finish,
            ))
        },
    )
}

/// `POST /portal/bring_your_own_key`: the customer's key is checked and works.
pub(crate) async fn verify_key(State(shared): State<Shared>, body: Bytes) -> Response {
    submit(
        &shared,
        &body,
        "bring_your_own_key",
        |store, organization_id, form| {
            let providers: Vec<(&str, &str)> = KEY_PROVIDERS.iter().map(|p| (*p, *p)).collect();
            let key_provider = offered(form, "key_provider", &providers, "a key provider")?;
            Ok((
                ops::byok_verification(store, organization_id, key_provider, true)?,
                Next::Finish,
            ))
        },
    )
}
