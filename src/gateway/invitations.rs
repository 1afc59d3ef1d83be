//! IT contacts and e-mailed invitations. Who may be invited is decided before anything is sent:
//! the address is parsed strictly, its domain must be one the caller's rule allows (checked
//! before any WorkOS call when the rule lists domains; after one read of the organization when
//! it says `organization`), and the audit keeps the domain and a fingerprint, never the address.

use std::sync::Arc;

use crate::{
    auth::policy::{AccessRequest, InviteeVerdict, OrganizationFacts, Rpc},
    domain::{
        DomainState, OrganizationId, OrganizationRef,
        invitation::{self, InvitationIntent, Invitee, ItContact, canonical_domain},
    },
    error::{Error, Invalid},
    workos,
};

use super::{Call, Gateway};

/// What an invitation did.
#[derive(Debug, Clone)]
pub struct Invited {
    /// The organization.
    pub organization_id: OrganizationId,
    /// The invited contact.
    pub contact: ItContact,
    /// Whether the contact was added by this call.
    pub contact_created: bool,
    /// Whether an active invitation was revoked to send this one.
    pub replaced_active: bool,
}

const ALREADY_EXISTS: &str = "it_contact_already_exists";
/// Contacts asked at most to find the one holding the active invitation.
const MAX_REVOKE_SCAN: usize = 20;
const INVITATION_ACTIVE: &str = "it_contact_invitation_already_active";

impl Gateway {
    /// `ListItContacts`.
    pub async fn list_it_contacts(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
    ) -> Result<Vec<ItContact>, Error> {
        let organization_id = self
            .authorize_contacts(call, Rpc::ListItContacts, &organization, &[])
            .await?;
        self.workos
            .list_it_contacts(&mut call.upstream, &organization_id)
            .await
            .map_err(|e| Error::from(e).not_found_as("organization", organization_id.as_str()))
    }

    /// `AddItContact`: idempotent; an address that is already a contact is returned.
    pub async fn add_it_contact(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
        email: &str,
    ) -> Result<(ItContact, bool), Error> {
        let invitee = invitee(call, email)?;
        let organization_id = self
            .authorize_invitee(call, Rpc::AddItContact, &organization, &invitee, &[])
            .await?;
        self.ensure_contact(&mut call.upstream, &organization_id, &invitee)
            .await
    }

    /// `RemoveItContact`: WorkOS revokes the contact's links with it.
    pub async fn remove_it_contact(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
        email: &str,
    ) -> Result<String, Error> {
        let (organization_id, contact) = self
            .existing_contact(call, Rpc::RemoveItContact, &organization, email)
            .await?;
        self.workos
            .delete_it_contact(&mut call.upstream, &organization_id, &contact.id)
            .await
            .map_err(|e| Error::from(e).not_found_as("it_contact", contact.id.as_str()))?;
        Ok(contact.id)
    }

    /// `InviteItContact`: adds the contact when missing, then has WorkOS e-mail the setup link.
    /// With `replace_active`, an active invitation is revoked first, in the same call.
    pub async fn invite_it_contact(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
        email: &str,
        intents: Vec<InvitationIntent>,
        replace_active: bool,
    ) -> Result<Invited, Error> {
        let names: Vec<&'static str> = intents.iter().map(|i| i.workos_name()).collect();
        call.facts.invitation(names.clone(), None);
        let invitee = invitee(call, email)?;
        if replace_active {
            // Replacing revokes someone's invitation: the rule must allow revoking too.
            let acting_user = call.acting_user.clone();
            call.policy
                .authorize(
                    &call.caller.identity,
                    &AccessRequest {
                        acting_user: acting_user.as_deref(),
                        ..AccessRequest::new(Rpc::RevokeInvitation)
                    },
                )
                .into_result()?;
        }
        let organization_id = self
            .authorize_invitee(
                call,
                Rpc::InviteItContact,
                &organization,
                &invitee,
                &intents,
            )
            .await?;
        // One invite at a time per organization on this replica: two replacing each other
        // would otherwise both revoke and both report success.
        let lock = self.invite_lock(organization_id.as_str());
        let _serialised = lock.lock().await;
        let (contact, contact_created) = self
            .ensure_contact(&mut call.upstream, &organization_id, &invitee)
            .await?;
        let mut first = self
            .workos
            .invite_it_contact(&mut call.upstream, &organization_id, &contact.id, &intents)
            .await;
        if let Err(lost @ workos::Error::OutcomeUnknown(_)) = &first {
            // The answer was lost. WorkOS keeps one active invitation per organization, so a
            // second sending cannot mail twice: it goes out now if the first did not. If one is
            // active, nothing says whose (another replica's, an earlier one): still unknown.
            let lost = lost.clone();
            first = match self
                .workos
                .invite_it_contact(&mut call.upstream, &organization_id, &contact.id, &intents)
                .await
            {
                Err(error) if code_of(&error) == Some(INVITATION_ACTIVE) => {
                    return Err(lost.into());
                }
                settled => settled,
            };
        }
        let replaced_active = match first {
            Ok(()) => false,
            Err(error) if code_of(&error) == Some(INVITATION_ACTIVE) => {
                if !replace_active {
                    return Err(already_active(&organization_id));
                }
                self.revoke_active(&mut call.upstream, &organization_id, &contact.id)
                    .await?;
                // The revocation is audited even if the new invitation then fails.
                call.facts.invitation(names.clone(), Some(true));
                match self
                    .workos
                    .invite_it_contact(&mut call.upstream, &organization_id, &contact.id, &intents)
                    .await
                {
                    Ok(()) => true,
                    // Another invitation (from another replica) got in between.
                    Err(error) if code_of(&error) == Some(INVITATION_ACTIVE) => {
                        return Err(already_active(&organization_id));
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => {
                return Err(
                    Error::from(error).not_found_as("organization", organization_id.as_str())
                );
            }
        };
        call.facts.invitation(names, Some(replaced_active));
        Ok(Invited {
            organization_id,
            contact,
            contact_created,
            replaced_active,
        })
    }

    /// The lock serialising invitations to one organization on this replica.
    fn invite_lock(&self, organization_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .invite_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(organization_id.to_owned()).or_default().clone()
    }

    /// `RevokeInvitation`: revokes the active invitation sent to `email`.
    pub async fn revoke_invitation(
        &self,
        call: &mut Call,
        organization: OrganizationRef,
        email: &str,
    ) -> Result<String, Error> {
        let (organization_id, contact) = self
            .existing_contact(call, Rpc::RevokeInvitation, &organization, email)
            .await?;
        self.workos
            .revoke_invitation(&mut call.upstream, &organization_id, &contact.id)
            .await
            .map_err(|e| {
                Error::from(e).not_found_as("invitation", format!("it_contact/{}", contact.id))
            })?;
        Ok(contact.id)
    }

    /// The contact a call names by address, after authorizing the call for the organization;
    /// NOT_FOUND when the organization has no such contact.
    async fn existing_contact(
        &self,
        call: &mut Call,
        rpc: Rpc,
        organization: &OrganizationRef,
        email: &str,
    ) -> Result<(OrganizationId, ItContact), Error> {
        let invitee = invitee(call, email)?;
        let organization_id = self
            .authorize_contacts(call, rpc, organization, &[])
            .await?;
        let contact = self
            .find_contact(&mut call.upstream, &organization_id, &invitee)
            .await?
            .ok_or_else(|| contact_not_found(&invitee))?;
        Ok((organization_id, contact))
    }

    /// Authorizes an IT-contact call for the organization (and each intent) and resolves it.
    async fn authorize_contacts(
        &self,
        call: &mut Call,
        rpc: Rpc,
        organization: &OrganizationRef,
        intents: &[InvitationIntent],
    ) -> Result<OrganizationId, Error> {
        let acting_user = call.acting_user.clone();
        for intent in intents {
            call.policy
                .authorize(
                    &call.caller.identity,
                    &AccessRequest {
                        intent: Some(intent.link_intent()),
                        acting_user: acting_user.as_deref(),
                        ..AccessRequest::new(rpc)
                    },
                )
                .into_result()?;
        }
        let base = AccessRequest {
            acting_user: acting_user.as_deref(),
            ..AccessRequest::new(rpc)
        };
        self.authorize_and_resolve(call, base, organization).await
    }

    /// Authorizes the call, then the invitee: by the rule's domains before any WorkOS call, and
    /// by the organization's verified domains (read fresh) when the rule says `organization`.
    async fn authorize_invitee(
        &self,
        call: &mut Call,
        rpc: Rpc,
        organization: &OrganizationRef,
        invitee: &Invitee,
        intents: &[InvitationIntent],
    ) -> Result<OrganizationId, Error> {
        let identity = call.caller.identity.clone();
        // The RPC, intents and acting user first (no WorkOS call), so a caller that may not
        // invite at all hears that rather than something about the address.
        let acting_user = call.acting_user.clone();
        call.policy
            .authorize(
                &identity,
                &AccessRequest {
                    acting_user: acting_user.as_deref(),
                    ..AccessRequest::new(rpc)
                },
            )
            .into_result()?;
        let verdict = call
            .policy
            .authorize_invitee(&identity, invitee.domain(), None);
        if let InviteeVerdict::Denied(decision) = &verdict {
            super::scope::note(&mut call.facts, organization);
            decision.clone().into_result()?;
        }
        let organization_id = self
            .authorize_contacts(call, rpc, organization, intents)
            .await?;
        if verdict == InviteeVerdict::NeedsOrganizationDomains {
            let (fresh, verified) = self
                .verified_domains(&mut call.upstream, &organization_id)
                .await?;
            // The scope again, on what was just read (the cache may have held an older
            // external id).
            let acting_user = call.acting_user.clone();
            call.policy
                .authorize(
                    &identity,
                    &AccessRequest {
                        organization: Some(OrganizationFacts {
                            id: Some(organization_id.as_str()),
                            external_id: fresh.as_deref(),
                        }),
                        acting_user: acting_user.as_deref(),
                        ..AccessRequest::new(rpc)
                    },
                )
                .into_result()?;
            if let InviteeVerdict::Denied(decision) =
                call.policy
                    .authorize_invitee(&identity, invitee.domain(), Some(&verified))
            {
                decision.into_result()?;
            }
        }
        Ok(organization_id)
    }

    /// The organization's external id and verified domains (in canonical form), read fresh.
    async fn verified_domains(
        &self,
        upstream: &mut workos::Call,
        organization_id: &OrganizationId,
    ) -> Result<(Option<String>, Vec<String>), Error> {
        self.workos
            .forget_organization(organization_id.as_str())
            .await;
        let organization = self
            .workos
            .get_organization(upstream, organization_id)
            .await
            .map_err(|e| Error::from(e).not_found_as("organization", organization_id.as_str()))?;
        let verified = organization
            .domains
            .iter()
            .filter(|d| matches!(d.state, DomainState::Verified | DomainState::LegacyVerified))
            .filter_map(|d| canonical_domain(&d.domain).ok())
            .collect();
        Ok((organization.external_id, verified))
    }

    /// The contact with the invitee's address, if the organization has one.
    async fn find_contact(
        &self,
        upstream: &mut workos::Call,
        organization_id: &OrganizationId,
        invitee: &Invitee,
    ) -> Result<Option<ItContact>, Error> {
        let contacts = self
            .workos
            .list_it_contacts(upstream, organization_id)
            .await
            .map_err(|e| Error::from(e).not_found_as("organization", organization_id.as_str()))?;
        Ok(contacts
            .into_iter()
            .find(|c| same_address(&c.email, invitee)))
    }

    /// The invitee's contact, added when missing; whether this call added it.
    async fn ensure_contact(
        &self,
        upstream: &mut workos::Call,
        organization_id: &OrganizationId,
        invitee: &Invitee,
    ) -> Result<(ItContact, bool), Error> {
        if let Some(contact) = self
            .find_contact(upstream, organization_id, invitee)
            .await?
        {
            return Ok((contact, false));
        }
        match self
            .workos
            .create_it_contact(upstream, organization_id, invitee)
            .await
        {
            Ok(contact) => Ok((contact, true)),
            // Added meanwhile (a concurrent call, or a retried one): it is there now.
            Err(error) if code_of(&error) == Some(ALREADY_EXISTS) => self
                .find_contact(upstream, organization_id, invitee)
                .await?
                .map(|contact| (contact, false))
                .ok_or_else(|| Error::from(error)),
            // The answer was lost: the contact is there if it was added (contacts are unique
            // by address), and then this call added it.
            Err(error @ workos::Error::OutcomeUnknown(_)) => self
                .find_contact(upstream, organization_id, invitee)
                .await?
                .map(|contact| (contact, true))
                .ok_or_else(|| Error::from(error)),
            Err(error) => {
                Err(Error::from(error).not_found_as("organization", organization_id.as_str()))
            }
        }
    }

    /// Revokes the organization's active invitation: through `contact_id` first (a re-invite of
    /// the same admin), else through whichever contact holds it.
    async fn revoke_active(
        &self,
        upstream: &mut workos::Call,
        organization_id: &OrganizationId,
        contact_id: &str,
    ) -> Result<(), Error> {
        let first = self
            .workos
            .revoke_invitation(upstream, organization_id, contact_id)
            .await;
        match first {
            Ok(()) => return Ok(()),
            Err(workos::Error::Api { status: 404, .. }) => {}
            Err(other) => return Err(other.into()),
        }
        let contacts = self
            .workos
            .list_it_contacts(upstream, organization_id)
            .await?;
        // WorkOS does not say which contact holds the invitation: ask a bounded number.
        for contact in contacts
            .iter()
            .filter(|c| c.id != contact_id)
            .take(MAX_REVOKE_SCAN)
        {
            match self
                .workos
                .revoke_invitation(upstream, organization_id, &contact.id)
                .await
            {
                Ok(()) => return Ok(()),
                Err(workos::Error::Api { status: 404, .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        if contacts.len() > MAX_REVOKE_SCAN + 1 {
            return Err(Error::FailedPrecondition {
                reason: "INVITATION_HOLDER_UNKNOWN",
                subject: format!("organization/{organization_id}"),
                description: "the active invitation's contact could not be found among the first contacts; revoke it with RevokeInvitation naming its address".into(),
            });
        }
        // Nobody holds it any more: it ended meanwhile, and the new invitation can go.
        Ok(())
    }
}

/// Records the invitee in the audit facts (its domain and a fingerprint, even of an address
/// that is refused) and parses it.
fn invitee(call: &mut Call, email: &str) -> Result<Invitee, Error> {
    match Invitee::parse(email) {
        Ok(invitee) => {
            call.facts
                .invitee(Some(invitee.domain().to_owned()), invitee.fingerprint());
            Ok(invitee)
        }
        Err(problem) => {
            call.facts.invitee(
                invitation::raw_domain(email),
                invitation::address_fingerprint(email),
            );
            let mut invalid = Invalid::default();
            invalid.add("email", problem);
            Err(invalid.into())
        }
    }
}

fn same_address(stored: &str, invitee: &Invitee) -> bool {
    Invitee::parse(stored).is_ok_and(|s| s.as_str() == invitee.as_str())
        || stored.eq_ignore_ascii_case(invitee.as_str())
}

fn already_active(organization_id: &OrganizationId) -> Error {
    Error::FailedPrecondition {
        reason: "INVITATION_ALREADY_ACTIVE",
        subject: format!("organization/{organization_id}"),
        description: "the organization already has an active invitation (WorkOS allows one); revoke it with RevokeInvitation, or set replace_active".into(),
    }
}

fn contact_not_found(invitee: &Invitee) -> Error {
    Error::NotFound {
        reason: "IT_CONTACT_NOT_FOUND",
        resource_type: "it_contact",
        name: invitee.fingerprint(),
    }
}

fn code_of(error: &workos::Error) -> Option<&str> {
    match error {
        workos::Error::Api {
            status: 409, code, ..
        } => code.as_deref(),
        _ => None,
    }
}
