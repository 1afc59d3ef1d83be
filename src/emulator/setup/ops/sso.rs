//! SSO: configuring, activating, deactivating and deleting connections, and the SAML
//! certificate events.

use std::time::Duration;

use serde_json::json;

use super::{Outcome, SetupError, Step, organization};
use crate::emulator::{
    events,
    setup::{Connection, ConnectionState},
    state::{Store, timestamp},
};

/// Configures a new connection: `validating` until its first sign-in. WorkOS announces no
/// event for this.
pub(crate) fn configure_connection(
    store: &mut Store,
    organization_id: &str,
    provider: &str,
) -> Step {
    let connection = new_connection(store, organization_id, provider)?;
    Ok(Outcome {
        events: Vec::new(),
        changed: ("connection", connection.to_json()),
    })
}

fn new_connection(
    store: &mut Store,
    organization_id: &str,
    provider: &str,
) -> Result<Connection, SetupError> {
    let organization = organization(store, organization_id)?;
    let name = organization.name.clone();
    let domains = organization
        .domains
        .iter()
        .map(|d| (d.id.clone(), d.domain.clone()))
        .collect();
    let now = store.now();
    let connection = Connection {
        id: store.new_id("conn_"),
        organization_id: organization_id.to_owned(),
        connection_type: provider.to_owned(),
        name,
        state: ConnectionState::Validating,
        domains,
        external_key: store.token(20),
        created_at: now,
        updated_at: now,
    };
    store
        .connections
        .insert(connection.id.clone(), connection.clone());
    Ok(connection)
}

/// The connection a step names, or the organization's newest one that `fits`.
fn pick_connection(
    store: &Store,
    organization_id: &str,
    connection_id: Option<&str>,
    fits: impl Fn(&Connection) -> bool,
) -> Result<Option<String>, SetupError> {
    organization(store, organization_id)?;
    if let Some(id) = connection_id {
        return match store.connections.get(id) {
            Some(c) if c.organization_id == organization_id => Ok(Some(id.to_owned())),
            _ => Err(SetupError::Invalid(
                "connection_id",
                format!("{id} is not a connection of {organization_id}"),
            )),
        };
    }
    Ok(store
        .connections
        .values()
        .rev()
        .find(|c| c.organization_id == organization_id && fits(c))
        .map(|c| c.id.clone()))
}

/// A successful test sign-in: the connection becomes `active` and `connection.activated` is
/// emitted. Without a connection to activate, one is configured first with `provider`. WorkOS
/// wants a verified domain before SSO activates (unless the organization allows any domain);
/// the emulator does not, so a test can set up SSO without domain verification first.
pub(crate) fn activate_connection(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
    provider: &str,
) -> Step {
    let id = match pick_connection(store, organization_id, connection_id, |_| true)? {
        Some(id) => id,
        None => new_connection(store, organization_id, provider)?.id,
    };
    change_connection(
        store,
        &id,
        ConnectionState::Active,
        events::CONNECTION_ACTIVATED,
    )
}

/// The connection stops authenticating: `inactive`, `connection.deactivated`.
pub(crate) fn deactivate_connection(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
) -> Step {
    let picked = pick_connection(store, organization_id, connection_id, |c| {
        c.state == ConnectionState::Active
    })?;
    let id = picked.ok_or_else(|| {
        SetupError::Conflict(format!("{organization_id} has no active connection"))
    })?;
    change_connection(
        store,
        &id,
        ConnectionState::Inactive,
        events::CONNECTION_DEACTIVATED,
    )
}

fn change_connection(
    store: &mut Store,
    id: &str,
    state: ConnectionState,
    event: &'static str,
) -> Step {
    let now = store.now();
    let Some(connection) = store.connections.get_mut(id) else {
        return Err(SetupError::Conflict(format!("{id} no longer exists")));
    };
    if connection.state == state {
        return Err(SetupError::Conflict(format!(
            "{id} is already {}",
            state.as_str()
        )));
    }
    connection.state = state;
    connection.updated_at = now;
    let connection = connection.clone();
    let event_id = store.emit(
        event,
        Some(&connection.organization_id),
        connection.activation_payload(),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("connection", connection.to_json()),
    })
}

/// Deletes the named connection, or the organization's newest one.
pub(crate) fn delete_organization_connection(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
) -> Step {
    let id = pick_connection(store, organization_id, connection_id, |_| true)?
        .ok_or_else(|| SetupError::Conflict(format!("{organization_id} has no connection")))?;
    delete_connection(store, &id)
        .ok_or_else(|| SetupError::Conflict(format!("{id} no longer exists")))
}

/// Deletes a connection and emits `connection.deleted`; `None` when there is no such connection.
pub(crate) fn delete_connection(store: &mut Store, id: &str) -> Option<Outcome> {
    let connection = store.connections.remove(id)?;
    let event_id = store.emit(
        events::CONNECTION_DELETED,
        Some(&connection.organization_id),
        connection.deleted_payload(),
    );
    Some(Outcome {
        events: vec![event_id],
        changed: ("deleted", json!({ "object": "connection", "id": id })),
    })
}

/// The organization's oldest SAML connection, or the named one, for certificate events.
fn saml_connection(
    store: &Store,
    organization_id: &str,
    connection_id: Option<&str>,
) -> Result<Connection, SetupError> {
    organization(store, organization_id)?;
    let found = match connection_id {
        Some(id) => store
            .connections
            .get(id)
            .filter(|c| c.organization_id == organization_id && c.is_saml()),
        None => store
            .connections
            .values()
            .find(|c| c.organization_id == organization_id && c.is_saml()),
    };
    match (found, connection_id) {
        (Some(connection), _) => Ok(connection.clone()),
        (None, Some(id)) => Err(SetupError::Invalid(
            "connection_id",
            format!("{id} is not a SAML connection of {organization_id}"),
        )),
        (None, None) => Err(SetupError::Conflict(format!(
            "{organization_id} has no SAML connection"
        ))),
    }
}

/// `connection.saml_certificate_renewal_required` for a certificate expiring in `days`.
pub(crate) fn certificate_renewal_required(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
    certificate_type: &str,
    days: u64,
) -> Step {
    let connection = saml_connection(store, organization_id, connection_id)?;
    let expiry = store.now() + Duration::from_secs(days * 24 * 60 * 60);
    let event_id = store.emit(
        events::CERTIFICATE_RENEWAL_REQUIRED,
        Some(organization_id),
        json!({
            "connection": connection.reference(),
            "certificate": {
                "certificate_type": certificate_type,
                "expiry_date": timestamp(expiry),
                "is_expired": false,
            },
            "days_until_expiry": days,
        }),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("connection", connection.to_json()),
    })
}

/// `connection.saml_certificate_renewed`: a new certificate valid for a year.
pub(crate) fn certificate_renewed(
    store: &mut Store,
    organization_id: &str,
    connection_id: Option<&str>,
    certificate_type: &str,
) -> Step {
    let connection = saml_connection(store, organization_id, connection_id)?;
    let now = store.now();
    let event_id = store.emit(
        events::CERTIFICATE_RENEWED,
        Some(organization_id),
        json!({
            "connection": connection.reference(),
            "certificate": {
                "certificate_type": certificate_type,
                "expiry_date": timestamp(now + Duration::from_secs(365 * 24 * 60 * 60)),
            },
            "renewed_at": timestamp(now),
        }),
    );
    Ok(Outcome {
        events: vec![event_id],
        changed: ("connection", connection.to_json()),
    })
}
