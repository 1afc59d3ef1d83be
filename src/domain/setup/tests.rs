//! The setup rules and cursors.
use super::*;

fn connection(state: &str) -> Connection {
    Connection {
        id: "conn_1".into(),
        connection_type: "OktaSAML".into(),
        name: "Acme".into(),
        state: ConnectionState::parse(state),
        state_raw: state.into(),
        domains: Vec::new(),
        created_at: None,
        updated_at: None,
    }
}

fn directory(state: &str) -> Directory {
    Directory {
        id: "directory_1".into(),
        directory_type: "okta scim v2.0".into(),
        name: "Acme".into(),
        state: DirectoryState::parse(state),
        state_raw: state.into(),
        created_at: None,
        updated_at: None,
    }
}

#[test]
fn any_active_connection_completes_sso_and_unknown_states_never_fail() {
    assert_eq!(sso_status(&[]).state, SetupState::NotStarted);
    let mixed = [connection("inactive"), connection("active")];
    assert_eq!(sso_status(&mixed).state, SetupState::Complete);
    assert_eq!(
        sso_status(&[connection("validating")]).state,
        SetupState::InProgress
    );
    assert_eq!(
        sso_status(&[connection("inactive")]).state,
        SetupState::NeedsAttention
    );
    let novel = sso_status(&[connection("quarantined")]);
    assert_eq!(
        (novel.state, novel.detail),
        (SetupState::Unknown, "connection_state_unknown")
    );
}

#[test]
fn both_directory_vocabularies_mean_the_same() {
    for linked in ["linked", "active"] {
        assert_eq!(DirectoryState::parse(linked), DirectoryState::Linked);
    }
    for unlinked in ["unlinked", "inactive"] {
        assert_eq!(DirectoryState::parse(unlinked), DirectoryState::Unlinked);
    }
    assert_eq!(
        dsync_status(&[directory("invalid_credentials")]).state,
        SetupState::NeedsAttention
    );
    assert_eq!(
        dsync_status(&[directory("linked")]).state,
        SetupState::Complete
    );
}

#[test]
fn key_and_certificate_states_come_from_their_last_event() {
    let signal = |name: &str, verified| Signal {
        name: name.into(),
        verified,
    };
    assert_eq!(key_status(None).state, SetupState::Unknown);
    let verified = signal("vault.byok_key.verification_completed", Some(true));
    assert_eq!(key_status(Some(&verified)).state, SetupState::Complete);
    let failed = signal("vault.byok_key.verification_completed", Some(false));
    assert_eq!(key_status(Some(&failed)).state, SetupState::NeedsAttention);
    let required = signal("connection.saml_certificate_renewal_required", None);
    assert_eq!(
        certificate_status(Some(&required)).state,
        SetupState::NeedsAttention
    );
    assert_eq!(certificate_status(None).state, SetupState::NotStarted);
}

#[test]
fn cursors_round_trip_and_hostile_ones_are_refused() {
    for position in [
        Position::After("event_01HZZZZZZZZZZZZZZZZZZZZZZZ".into()),
        Position::Since(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
    ] {
        assert_eq!(Position::decode(&position.encode()), Ok(position));
    }
    for bad in ["", "a1.", "a1.conn_1", "a1.event_../x", "t1.x", "zz"] {
        assert_eq!(Position::decode(bad), Err(BadCursor), "{bad:?}");
    }
    assert_eq!(
        event_intent("organization_domain.verified"),
        Some(Intent::DomainVerification)
    );
    assert_eq!(event_intent("user.created"), None);
}
