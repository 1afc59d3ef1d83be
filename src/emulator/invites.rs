//! IT contacts and the Admin Portal invitations WorkOS e-mails them: the dashboard's "Invite
//! admin" through the API. An invitation mints a portal link and "sends" it: the message lands
//! in an outbox the control API shows (`/_emulator/outbox`), so a test can open the link the
//! IT admin would have received.
//!
//! Choices where WorkOS's behaviour is unconfirmed:
//! - contact ids are `it_contact_` + a ULID;
//! - an invitation link works for seven days (API-minted links work for five minutes);
//! - an invitation naming one intent opens that intent's flow; one naming several opens the
//!   portal's menu limited to them. `directory_sync` opens the portal's `dsync` flow;
//! - an expired invitation is no longer active: the organization may be invited again;
//! - revoking answers 404 unless the contact in the path holds the organization's active
//!   invitation;
//! - removing a contact revokes every link its invitations minted (they then answer 410);
//!   links minted through `POST /portal/generate_link` are the application's and stay;
//! - no event is emitted for contacts or invitations.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};

use super::{
    api::expired,
    state::{Link, Store, timestamp},
};

/// The prefix of an IT contact's id. WorkOS's is unconfirmed.
pub(crate) const CONTACT_ID_PREFIX: &str = "it_contact_";

/// How long an invitation's link works. WorkOS's is unconfirmed; a week leaves the IT admin
/// time to read the message.
pub(crate) const INVITATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The intents an invitation may name, each with the portal intent its link opens.
pub(crate) const INVITE_INTENTS: [(&str, &str); 5] = [
    ("sso", "sso"),
    ("directory_sync", "dsync"),
    ("log_streams", "log_streams"),
    ("domain_verification", "domain_verification"),
    ("bring_your_own_key", "bring_your_own_key"),
];

/// An organization's IT contact.
#[derive(Debug, Clone)]
pub(crate) struct ItContact {
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) email: String,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
}

impl ItContact {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "object": "it_contact",
            "id": self.id,
            "email": self.email,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }
}

/// An invitation that was sent: whom to, and the secret of the link it carried.
#[derive(Debug, Clone)]
pub(crate) struct Invitation {
    pub(crate) organization_id: String,
    pub(crate) contact_id: String,
    pub(crate) secret: String,
}

/// One message in the outbox.
#[derive(Debug, Clone)]
pub(crate) struct OutboxMessage {
    pub(crate) to: String,
    pub(crate) subject: String,
    pub(crate) link: String,
    secret: String,
    /// As the invitation named them (`directory_sync`, not the portal's `dsync`).
    pub(crate) intents: Vec<&'static str>,
    pub(crate) organization_id: String,
    pub(crate) contact_id: String,
    pub(crate) sent_at: SystemTime,
}

/// IT contacts, every invitation sent, and the outbox. Clearing the outbox forgets messages,
/// not invitations.
#[derive(Debug, Default)]
pub(crate) struct Invites {
    /// By id; ids are ULIDs, so the map is in creation order.
    pub(crate) contacts: BTreeMap<String, ItContact>,
    invitations: Vec<Invitation>,
    pub(crate) outbox: Vec<OutboxMessage>,
}

/// Why an IT contact call was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InviteError {
    NoOrganization,
    NoContact,
    /// The address is already one of the organization's contacts.
    ContactExists,
    /// The organization already has an active invitation.
    InvitationActive,
    /// The contact holds no active invitation.
    NoInvitation,
}

/// The portal intent an invitation intent opens, `None` for an intent invitations do not take.
pub(crate) fn portal_intent(intent: &str) -> Option<(&'static str, &'static str)> {
    INVITE_INTENTS
        .iter()
        .copied()
        .find(|(api, _)| *api == intent)
}

impl Store {
    /// The contact `contact_id` of `organization_id`.
    pub(crate) fn it_contact(
        &self,
        organization_id: &str,
        contact_id: &str,
    ) -> Result<&ItContact, InviteError> {
        if !self.organizations.contains_key(organization_id) {
            return Err(InviteError::NoOrganization);
        }
        self.invites
            .contacts
            .get(contact_id)
            .filter(|c| c.organization_id == organization_id)
            .ok_or(InviteError::NoContact)
    }

    /// Adds a contact; an address is one contact per organization, whatever its case.
    pub(crate) fn add_it_contact(
        &mut self,
        organization_id: &str,
        email: &str,
    ) -> Result<ItContact, InviteError> {
        if !self.organizations.contains_key(organization_id) {
            return Err(InviteError::NoOrganization);
        }
        if self
            .invites
            .contacts
            .values()
            .any(|c| c.organization_id == organization_id && c.email.eq_ignore_ascii_case(email))
        {
            return Err(InviteError::ContactExists);
        }
        let now = self.now();
        let contact = ItContact {
            id: self.new_id(CONTACT_ID_PREFIX),
            organization_id: organization_id.to_owned(),
            email: email.to_owned(),
            created_at: now,
            updated_at: now,
        };
        self.invites
            .contacts
            .insert(contact.id.clone(), contact.clone());
        Ok(contact)
    }

    /// The organization's active invitation: the last one sent, while its link is neither
    /// revoked nor expired. At most one is active at a time, so the last is the only candidate.
    pub(crate) fn active_invitation(&self, organization_id: &str) -> Option<&Invitation> {
        let now = self.now();
        self.invites
            .invitations
            .iter()
            .rev()
            .find(|i| i.organization_id == organization_id)
            .filter(|i| {
                self.links
                    .get(&i.secret)
                    .is_some_and(|link| !link.revoked && !expired(link, now))
            })
    }

    /// Mints the invitation's link and "sends" it to the contact. `intents` are the API's
    /// names, checked and without repeats.
    pub(crate) fn invite_it_contact(
        &mut self,
        origin: &str,
        organization_id: &str,
        contact_id: &str,
        intents: Vec<&'static str>,
    ) -> Result<(), InviteError> {
        let to = self.it_contact(organization_id, contact_id)?.email.clone();
        if self.active_invitation(organization_id).is_some() {
            return Err(InviteError::InvitationActive);
        }
        let portal: Vec<&'static str> = intents
            .iter()
            .filter_map(|i| portal_intent(i).map(|(_, portal)| portal))
            .collect();
        let (intent, menu) = match portal.as_slice() {
            [one] => (Some((*one).to_owned()), None),
            _ => (None, Some(portal)),
        };
        let organization_name = self
            .organizations
            .get(organization_id)
            .map(|o| o.name.clone())
            .unwrap_or_default();
        let secret = self.token(43);
        let link = format!("{origin}/portal/launch?secret={secret}");
        let sent_at = self.now();
        self.links.insert(
            secret.clone(),
            Link {
                organization_id: organization_id.to_owned(),
                intent,
                menu,
                return_url: None,
                success_url: None,
                external_user_id: None,
                issued_at: sent_at,
                lifetime: INVITATION_LIFETIME,
                revoked: false,
            },
        );
        self.invites.invitations.push(Invitation {
            organization_id: organization_id.to_owned(),
            contact_id: contact_id.to_owned(),
            secret: secret.clone(),
        });
        self.invites.outbox.push(OutboxMessage {
            to,
            subject: format!("Set up {organization_name} in the Admin Portal"),
            link,
            secret,
            intents,
            organization_id: organization_id.to_owned(),
            contact_id: contact_id.to_owned(),
            sent_at,
        });
        Ok(())
    }

    /// Revokes the organization's active invitation, which must be this contact's.
    pub(crate) fn revoke_it_contact_invitation(
        &mut self,
        organization_id: &str,
        contact_id: &str,
    ) -> Result<(), InviteError> {
        self.it_contact(organization_id, contact_id)?;
        let secret = match self.active_invitation(organization_id) {
            Some(invitation) if invitation.contact_id == contact_id => invitation.secret.clone(),
            _ => return Err(InviteError::NoInvitation),
        };
        if let Some(link) = self.links.get_mut(&secret) {
            link.revoked = true;
        }
        Ok(())
    }

    /// Removes a contact and revokes every link its invitations carried.
    pub(crate) fn delete_it_contact(
        &mut self,
        organization_id: &str,
        contact_id: &str,
    ) -> Result<(), InviteError> {
        self.it_contact(organization_id, contact_id)?;
        self.invites.contacts.remove(contact_id);
        for invitation in &self.invites.invitations {
            if invitation.contact_id == contact_id
                && let Some(link) = self.links.get_mut(&invitation.secret)
            {
                link.revoked = true;
            }
        }
        Ok(())
    }

    /// What deleting an organization takes from here: its contacts, its invitations with their
    /// links, and its messages in the outbox.
    pub(crate) fn forget_organization_invites(&mut self, organization_id: &str) {
        let invites = &mut self.invites;
        invites
            .contacts
            .retain(|_, c| c.organization_id != organization_id);
        invites
            .outbox
            .retain(|m| m.organization_id != organization_id);
        let links = &mut self.links;
        invites.invitations.retain(|i| {
            let keep = i.organization_id != organization_id;
            if !keep {
                links.remove(&i.secret);
            }
            keep
        });
    }

    /// The outbox as the control API shows it, oldest first. A message's `revoked` is its
    /// link's state now.
    pub(crate) fn outbox_json(&self) -> Value {
        let messages: Vec<Value> = self
            .invites
            .outbox
            .iter()
            .map(|m| {
                let link = self.links.get(&m.secret);
                json!({
                    "to": m.to,
                    "subject": m.subject,
                    "link": m.link,
                    "intents": m.intents,
                    "organization_id": m.organization_id,
                    "contact_id": m.contact_id,
                    "sent_at": timestamp(m.sent_at),
                    "expires_at": timestamp(m.sent_at + INVITATION_LIFETIME),
                    "revoked": link.is_none_or(|l| l.revoked),
                })
            })
            .collect();
        json!({ "messages": messages })
    }
}
