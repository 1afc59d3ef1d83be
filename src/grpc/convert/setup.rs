//! SetupService conversions.

use super::{
    OkOrDefault as _, intent_from_proto, intent_to_proto, organization_domain, organization_ref,
    timestamp,
};
use crate::{
    domain::{
        Intent, OrganizationRef,
        setup::{
            AuditLogConfig, Connection, ConnectionState, Directory, DirectoryState, IntentStatus,
            LogStreamState, Position, SetupState, SetupStatus,
        },
    },
    error::Invalid,
    gateway::{SnapshotReason, WatchMessage},
    proto,
};

/// The longest `resume_cursor` accepted.
const CURSOR_MAX: usize = 80;

/// Requested intents: each must be a known intent; none means all.
fn intents(invalid: &mut Invalid, values: &[i32]) -> Vec<Intent> {
    if values.len() > Intent::ALL.len() * 4 {
        invalid.add(
            "intents",
            "lists more intents than there are (at most 28 entries)",
        );
        return Vec::new();
    }
    values
        .iter()
        .enumerate()
        .filter_map(|(i, value)| invalid.check(&format!("intents[{i}]"), intent_from_proto(*value)))
        .collect()
}

pub(crate) fn get_setup_status(
    req: proto::GetSetupStatusRequest,
) -> Result<(OrganizationRef, Vec<Intent>), Invalid> {
    use proto::get_setup_status_request::Organization as O;
    let mut invalid = Invalid::default();
    let (id, ext) = match &req.organization {
        Some(O::OrganizationId(id)) => (Some(id.as_str()), None),
        Some(O::ExternalId(ext)) => (None, Some(ext.as_str())),
        None => (None, None),
    };
    let organization = organization_ref(&mut invalid, id, ext, "organization_id", "external_id");
    let intents = intents(&mut invalid, &req.intents);
    invalid.into_result()?;
    Ok((organization.ok_or_default()?, intents))
}

pub(crate) fn watch_setup(
    req: proto::WatchSetupRequest,
) -> Result<(OrganizationRef, Vec<Intent>, Option<Position>), Invalid> {
    use proto::watch_setup_request::Organization as O;
    let mut invalid = Invalid::default();
    let (id, ext) = match &req.organization {
        Some(O::OrganizationId(id)) => (Some(id.as_str()), None),
        Some(O::ExternalId(ext)) => (None, Some(ext.as_str())),
        None => (None, None),
    };
    let organization = organization_ref(&mut invalid, id, ext, "organization_id", "external_id");
    let intents = intents(&mut invalid, &req.intents);
    let resume = if req.resume_cursor.is_empty() {
        None
    } else if req.resume_cursor.len() > CURSOR_MAX {
        invalid.add(
            "resume_cursor",
            "is not a cursor this gateway sent (too long)",
        );
        None
    } else {
        invalid.check(
            "resume_cursor",
            Position::decode(&req.resume_cursor)
                .map_err(|_| "is not a cursor this gateway sent".to_owned()),
        )
    };
    invalid.into_result()?;
    Ok((organization.ok_or_default()?, intents, resume))
}

fn setup_state(state: SetupState) -> proto::SetupState {
    match state {
        SetupState::NotStarted => proto::SetupState::NotStarted,
        SetupState::InProgress => proto::SetupState::InProgress,
        SetupState::Complete => proto::SetupState::Complete,
        SetupState::NeedsAttention => proto::SetupState::NeedsAttention,
        SetupState::Unknown => proto::SetupState::Unknown,
    }
}

fn intent_status(status: IntentStatus) -> proto::IntentStatus {
    proto::IntentStatus {
        intent: intent_to_proto(status.intent) as i32,
        state: setup_state(status.state) as i32,
        detail: status.detail.to_owned(),
    }
}

fn connection(c: &Connection) -> proto::Connection {
    use ConnectionState as S;
    proto::Connection {
        id: c.id.clone(),
        connection_type: c.connection_type.clone(),
        name: c.name.clone(),
        state: match c.state {
            S::RequiresType => proto::ConnectionState::RequiresType,
            S::Draft => proto::ConnectionState::Draft,
            S::Validating => proto::ConnectionState::Validating,
            S::Active => proto::ConnectionState::Active,
            S::Inactive => proto::ConnectionState::Inactive,
            S::Deleting => proto::ConnectionState::Deleting,
            S::Unknown => proto::ConnectionState::Unknown,
        } as i32,
        state_raw: c.state_raw.clone(),
        domains: c.domains.clone(),
        create_time: c.created_at.map(timestamp),
        update_time: c.updated_at.map(timestamp),
    }
}

fn directory(d: &Directory) -> proto::Directory {
    use DirectoryState as S;
    proto::Directory {
        id: d.id.clone(),
        directory_type: d.directory_type.clone(),
        name: d.name.clone(),
        state: match d.state {
            S::Linked => proto::DirectoryState::Linked,
            S::Validating => proto::DirectoryState::Validating,
            S::InvalidCredentials => proto::DirectoryState::InvalidCredentials,
            S::Unlinked => proto::DirectoryState::Unlinked,
            S::Deleting => proto::DirectoryState::Deleting,
            S::Unknown => proto::DirectoryState::Unknown,
        } as i32,
        state_raw: d.state_raw.clone(),
        create_time: d.created_at.map(timestamp),
        update_time: d.updated_at.map(timestamp),
    }
}

fn audit_log(config: &AuditLogConfig) -> proto::AuditLogConfiguration {
    proto::AuditLogConfiguration {
        state: config.state.clone(),
        retention_period_in_days: config
            .retention_period_in_days
            .map_or(0, |days| i32::try_from(days).unwrap_or(i32::MAX)),
        log_stream: config.log_stream.as_ref().map(|s| proto::LogStream {
            id: s.id.clone(),
            stream_type: s.stream_type.clone(),
            state: match s.state {
                LogStreamState::Active => proto::LogStreamState::Active,
                LogStreamState::Inactive => proto::LogStreamState::Inactive,
                LogStreamState::Error => proto::LogStreamState::Error,
                LogStreamState::Invalid => proto::LogStreamState::Invalid,
                LogStreamState::Unknown => proto::LogStreamState::Unknown,
            } as i32,
            state_raw: s.state_raw.clone(),
            last_sync_time: s.last_synced_at.map(timestamp),
            create_time: s.created_at.map(timestamp),
        }),
    }
}

pub(crate) fn setup_status(status: &SetupStatus) -> proto::SetupStatus {
    proto::SetupStatus {
        organization_id: status.organization_id.as_str().to_owned(),
        intents: status.intents.iter().copied().map(intent_status).collect(),
        connections: status
            .connections
            .iter()
            .flatten()
            .map(connection)
            .collect(),
        directories: status.directories.iter().flatten().map(directory).collect(),
        domains: status
            .domains
            .iter()
            .flatten()
            .cloned()
            .map(organization_domain)
            .collect(),
        audit_log: status
            .audit_log
            .as_ref()
            .and_then(Option::as_ref)
            .map(audit_log),
        read_time: Some(timestamp(status.read_at)),
    }
}

pub(crate) fn watch_message(message: WatchMessage) -> proto::WatchSetupResponse {
    let cursor = message.position().encode();
    match message {
        WatchMessage::Event { update, status } => {
            let event = &update.event;
            proto::WatchSetupResponse {
                event: Some(proto::SetupEvent {
                    id: event.id.clone(),
                    name: event.name.clone(),
                    intent: intent_to_proto(event.intent) as i32,
                    create_time: Some(timestamp(event.created_at)),
                    object_id: event.object_id.clone(),
                }),
                intents: vec![intent_status(status)],
                cursor,
                snapshot_reason: proto::SnapshotReason::Unspecified as i32,
                status: None,
            }
        }
        WatchMessage::Snapshot { status, reason, .. } => proto::WatchSetupResponse {
            event: None,
            intents: status.intents.iter().copied().map(intent_status).collect(),
            cursor,
            snapshot_reason: match reason {
                SnapshotReason::Initial => proto::SnapshotReason::Initial,
                SnapshotReason::Resync => proto::SnapshotReason::Resync,
            } as i32,
            status: Some(setup_status(&status)),
        },
    }
}
