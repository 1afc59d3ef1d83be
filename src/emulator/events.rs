//! The log behind the Events API: every state change WorkOS announces, oldest first, with the
//! payloads WorkOS sends. Ids come from the store's one ULID sequence, so they strictly increase
//! and ordering by id is ordering by time.
//!
//! Retention is 30 days on the emulator's clock: WorkOS's reference says 30 days, one of its
//! guides 90; the shorter one is what a consumer must survive. The log also keeps at most
//! [`MAX_EVENTS`], dropping the oldest first, so a long benchmark cannot grow memory without
//! bound.

use std::{
    collections::VecDeque,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

use super::state::{Store, timestamp};

/// How long an event can be listed.
pub(crate) const EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The most events kept at once.
pub(crate) const MAX_EVENTS: usize = 100_000;

pub(crate) const CONNECTION_ACTIVATED: &str = "connection.activated";
pub(crate) const CONNECTION_DEACTIVATED: &str = "connection.deactivated";
pub(crate) const CONNECTION_DELETED: &str = "connection.deleted";
pub(crate) const CERTIFICATE_RENEWAL_REQUIRED: &str =
    "connection.saml_certificate_renewal_required";
pub(crate) const CERTIFICATE_RENEWED: &str = "connection.saml_certificate_renewed";
pub(crate) const DSYNC_ACTIVATED: &str = "dsync.activated";
pub(crate) const DSYNC_DELETED: &str = "dsync.deleted";
pub(crate) const DOMAIN_CREATED: &str = "organization_domain.created";
pub(crate) const DOMAIN_DELETED: &str = "organization_domain.deleted";
pub(crate) const DOMAIN_VERIFIED: &str = "organization_domain.verified";
pub(crate) const DOMAIN_VERIFICATION_FAILED: &str = "organization_domain.verification_failed";
pub(crate) const BYOK_VERIFICATION_COMPLETED: &str = "vault.byok_key.verification_completed";
pub(crate) const BYOK_DELETED: &str = "vault.byok_key.deleted";

/// One recorded event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) id: String,
    pub(crate) event: &'static str,
    /// The organization the event is about, for the `organization_id` filter.
    pub(crate) organization_id: Option<String>,
    pub(crate) data: Value,
    pub(crate) created_at: SystemTime,
}

impl Event {
    /// The event as `GET /events` lists it. `context` is sent empty: whether WorkOS fills
    /// `context.actor` on these events is unconfirmed, and every field in it is optional.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "object": "event",
            "id": self.id,
            "event": self.event,
            "data": self.data,
            "created_at": timestamp(self.created_at),
            "context": {},
        })
    }
}

/// The events, oldest first.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    events: VecDeque<Event>,
}

impl EventLog {
    /// Events still within retention at `now`, oldest first.
    pub(crate) fn live(&self, now: SystemTime) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(move |e| e.created_at + EVENT_RETENTION > now)
    }

    fn push(&mut self, event: Event) {
        let now = event.created_at;
        while let Some(oldest) = self.events.front() {
            if oldest.created_at + EVENT_RETENTION > now && self.events.len() < MAX_EVENTS {
                break;
            }
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

impl Store {
    /// Records an event and returns its id. Its time is cut to milliseconds, the precision
    /// WorkOS writes, so a `range_start` or `range_end` copied from a listed event means that
    /// event exactly.
    pub(crate) fn emit(
        &mut self,
        event: &'static str,
        organization_id: Option<&str>,
        data: Value,
    ) -> String {
        let id = self.new_id("event_");
        let created_at = to_millis(self.now());
        self.events.push(Event {
            id: id.clone(),
            event,
            organization_id: organization_id.map(str::to_owned),
            data,
            created_at,
        });
        id
    }
}

fn to_millis(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

/// Every event name the Events API accepts in `events`: WorkOS's catalogue as the official
/// Python SDK 10.8.0 knows it. The emulator emits only the setup events above; asking for
/// any other known name is valid and finds nothing, and an unknown name is a 400, as at WorkOS.
pub(crate) const EVENT_NAMES: [&str; 136] = [
    "action.authentication.denied",
    "action.user_registration.denied",
    "agent.blueprint.created",
    "agent.blueprint.deleted",
    "agent.blueprint.updated",
    "agent.instance.created",
    "agent.instance.deleted",
    "agent.instance.session.created",
    "agent.instance.session.revoked",
    "agent.registration.claim.attempt.created",
    "agent.registration.claim.completed",
    "agent.registration.created",
    "agent.registration.credential.issued",
    "agent.registration.deleted",
    "agent.registration.expired",
    "agent.registration.organization.switched",
    "agent.registration.refreshed",
    "agent.registration.revoked",
    "api_key.created",
    "api_key.revoked",
    "api_key.updated",
    "authentication.email_verification_failed",
    "authentication.email_verification_succeeded",
    "authentication.magic_auth_failed",
    "authentication.magic_auth_succeeded",
    "authentication.mfa_failed",
    "authentication.mfa_succeeded",
    "authentication.oauth_failed",
    "authentication.oauth_succeeded",
    "authentication.passkey_failed",
    "authentication.passkey_succeeded",
    "authentication.password_failed",
    "authentication.password_succeeded",
    "authentication.radar_risk_detected",
    "authentication.reauthentication_succeeded",
    "authentication.sso_failed",
    "authentication.sso_started",
    "authentication.sso_succeeded",
    "authentication.sso_timed_out",
    "connection.activated",
    "connection.deactivated",
    "connection.deleted",
    "connection.saml_certificate_renewal_required",
    "connection.saml_certificate_renewed",
    "dsync.activated",
    "dsync.deleted",
    "dsync.group.created",
    "dsync.group.deleted",
    "dsync.group.updated",
    "dsync.group.user_added",
    "dsync.group.user_removed",
    "dsync.token.created",
    "dsync.token.revoked",
    "dsync.user.created",
    "dsync.user.deleted",
    "dsync.user.updated",
    "email_verification.created",
    "feature_flags.flag_rule.created",
    "feature_flags.flag_rule.deleted",
    "feature_flags.flag_rule.updated",
    "feature_flags.flag_target.created",
    "feature_flags.flag_target.deleted",
    "feature_flags.flag.created",
    "feature_flags.flag.deleted",
    "feature_flags.flag.updated",
    "flag.created",
    "flag.deleted",
    "flag.rule_updated",
    "flag.updated",
    "group.created",
    "group.deleted",
    "group.member_added",
    "group.member_removed",
    "group.updated",
    "invitation.accepted",
    "invitation.created",
    "invitation.resent",
    "invitation.revoked",
    "magic_auth.created",
    "organization_domain.created",
    "organization_domain.deleted",
    "organization_domain.updated",
    "organization_domain.verification_failed",
    "organization_domain.verified",
    "organization_membership.created",
    "organization_membership.deleted",
    "organization_membership.updated",
    "organization_role.created",
    "organization_role.deleted",
    "organization_role.updated",
    "organization.created",
    "organization.deleted",
    "organization.updated",
    "password_reset.created",
    "password_reset.succeeded",
    "permission.created",
    "permission.deleted",
    "permission.updated",
    "pipes.account_connection.add_failed",
    "pipes.account_connection.connected",
    "pipes.account_connection.connection_failed",
    "pipes.account_connection.disconnected",
    "pipes.account_connection.reauthorization_needed",
    "pipes.connected_account.connected",
    "pipes.connected_account.connection_failed",
    "pipes.connected_account.disconnected",
    "pipes.connected_account.reauthorization_needed",
    "radar.challenge_created",
    "resource_export.completed",
    "resource_export.created",
    "resource_export.downloaded",
    "resource_export.failed",
    "role.created",
    "role.deleted",
    "role.updated",
    "session.created",
    "session.revoked",
    "user.created",
    "user.deleted",
    "user.updated",
    "vault.byok_key.deleted",
    "vault.byok_key.verification_completed",
    "vault.data.created",
    "vault.data.deleted",
    "vault.data.read",
    "vault.data.updated",
    "vault.dek.decrypted",
    "vault.dek.read",
    "vault.dek.rekeyed",
    "vault.kek.created",
    "vault.kek.deleted",
    "vault.metadata.read",
    "vault.names.listed",
    "waitlist_user.approved",
    "waitlist_user.created",
    "waitlist_user.denied",
];
