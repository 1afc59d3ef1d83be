//! InvitationService conversions. Addresses are parsed in the core (so a refused address still
//! reaches the audit record); only the shape of the request is checked here.

use super::{OkOrDefault as _, organization_ref, timestamp};
use crate::{
    domain::{
        OrganizationRef,
        invitation::{InvitationIntent, ItContact},
    },
    error::Invalid,
    gateway::Invited,
    proto,
};

/// Reads an organization `oneof` shared by every request of the service.
macro_rules! organization {
    ($invalid:expr, $req:expr, $module:ident) => {{
        use proto::$module::Organization as O;
        let (id, ext) = match &$req.organization {
            Some(O::OrganizationId(id)) => (Some(id.as_str()), None),
            Some(O::ExternalId(ext)) => (None, Some(ext.as_str())),
            None => (None, None),
        };
        organization_ref($invalid, id, ext, "organization_id", "external_id")
    }};
}

fn intent(value: i32) -> Result<InvitationIntent, String> {
    use proto::InvitationIntent as P;
    match P::try_from(value) {
        Ok(P::Sso) => Ok(InvitationIntent::Sso),
        Ok(P::DirectorySync) => Ok(InvitationIntent::DirectorySync),
        Ok(P::LogStreams) => Ok(InvitationIntent::LogStreams),
        Ok(P::DomainVerification) => Ok(InvitationIntent::DomainVerification),
        Ok(P::BringYourOwnKey) => Ok(InvitationIntent::BringYourOwnKey),
        Ok(P::Unspecified) => Err("must be set".into()),
        Err(_) => Err(format!("{value} is not a known invitation intent")),
    }
}

pub(crate) fn list_it_contacts(
    req: proto::ListItContactsRequest,
) -> Result<OrganizationRef, Invalid> {
    let mut invalid = Invalid::default();
    let organization = organization!(&mut invalid, req, list_it_contacts_request);
    invalid.into_result()?;
    organization.ok_or_default()
}

/// The organization and the address of a request naming one contact.
fn with_email(
    invalid: Invalid,
    organization: Option<OrganizationRef>,
    email: String,
) -> Result<(OrganizationRef, String), Invalid> {
    invalid.into_result()?;
    Ok((organization.ok_or_default()?, email))
}

pub(crate) fn add_it_contact(
    req: proto::AddItContactRequest,
) -> Result<(OrganizationRef, String), Invalid> {
    let mut invalid = Invalid::default();
    let organization = organization!(&mut invalid, req, add_it_contact_request);
    with_email(invalid, organization, req.email)
}

pub(crate) fn remove_it_contact(
    req: proto::RemoveItContactRequest,
) -> Result<(OrganizationRef, String), Invalid> {
    let mut invalid = Invalid::default();
    let organization = organization!(&mut invalid, req, remove_it_contact_request);
    with_email(invalid, organization, req.email)
}

pub(crate) fn revoke_invitation(
    req: proto::RevokeInvitationRequest,
) -> Result<(OrganizationRef, String), Invalid> {
    let mut invalid = Invalid::default();
    let organization = organization!(&mut invalid, req, revoke_invitation_request);
    with_email(invalid, organization, req.email)
}

/// An invite request: organization, address, intents (at least one, no repeats) and whether to
/// replace an active invitation.
pub(crate) type Invite = (OrganizationRef, String, Vec<InvitationIntent>, bool);

pub(crate) fn invite_it_contact(req: proto::InviteItContactRequest) -> Result<Invite, Invalid> {
    let mut invalid = Invalid::default();
    let organization = organization!(&mut invalid, req, invite_it_contact_request);
    let mut intents = Vec::new();
    if req.intents.is_empty() {
        invalid.add("intents", "name at least one invitation intent");
    } else if req.intents.len() > InvitationIntent::ALL.len() {
        invalid.add("intents", "names more intents than there are (at most 5)");
    } else {
        for (i, value) in req.intents.iter().enumerate() {
            if let Some(parsed) = invalid.check(&format!("intents[{i}]"), intent(*value)) {
                if intents.contains(&parsed) {
                    invalid.add(format!("intents[{i}]"), "repeats an intent");
                } else {
                    intents.push(parsed);
                }
            }
        }
    }
    invalid.into_result()?;
    Ok((
        organization.ok_or_default()?,
        req.email,
        intents,
        req.replace_active,
    ))
}

pub(crate) fn it_contact(contact: ItContact) -> proto::ItContact {
    proto::ItContact {
        id: contact.id,
        email: contact.email,
        create_time: contact.created_at.map(timestamp),
        update_time: contact.updated_at.map(timestamp),
    }
}

pub(crate) fn invited(invited: Invited) -> proto::InviteItContactResponse {
    proto::InviteItContactResponse {
        it_contact: Some(it_contact(invited.contact)),
        contact_created: invited.contact_created,
        replaced_active: invited.replaced_active,
        organization_id: invited.organization_id.as_str().to_owned(),
    }
}
