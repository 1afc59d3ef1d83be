//! IT contacts and e-mailed invitations: `/organizations/{id}/it_contacts` and its invite and
//! revoke actions. Their JSON shapes stay in this file.

use std::sync::Arc;

use http::Method;
use serde::{Deserialize, Serialize};

use super::{
    Call, Client, Error,
    endpoints::decode,
    transport::{Family, Route},
    with_segment,
};
use crate::domain::{
    OrganizationId,
    invitation::{InvitationIntent, Invitee, ItContact},
};

static LIST_CONTACTS: Route = Route::new("GET /organizations/{id}/it_contacts", Family::Portal);
static CREATE_CONTACT: Route = Route {
    name: "POST /organizations/{id}/it_contacts",
    method: Method::POST,
    family: Family::Portal,
    delete: false,
    // A second sending adds the contact twice, or meets it as a conflict.
    duplicates: true,
};
static DELETE_CONTACT: Route = Route {
    name: "DELETE /organizations/{id}/it_contacts/{contact_id}",
    method: Method::DELETE,
    family: Family::Portal,
    delete: false,
    duplicates: false,
};
static INVITE_CONTACT: Route = Route {
    name: "POST /organizations/{id}/it_contacts/{contact_id}/invite",
    method: Method::POST,
    family: Family::Portal,
    delete: false,
    // A second sending after the first took effect meets it as already active: never sent again
    // blindly (the gateway settles a lost answer itself, under the organization's lock).
    duplicates: true,
};
static REVOKE_INVITATION: Route = Route {
    name: "POST /organizations/{id}/it_contacts/{contact_id}/revoke",
    method: Method::POST,
    family: Family::Portal,
    delete: false,
    duplicates: false,
};

#[derive(Debug, Deserialize)]
struct ContactWire {
    id: String,
    email: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct CreateContactWire<'a> {
    email: &'a str,
}

#[derive(Debug, Serialize)]
struct InviteWire {
    intents: Vec<&'static str>,
}

impl From<ContactWire> for ItContact {
    fn from(wire: ContactWire) -> Self {
        let time = |v: Option<String>| v.and_then(|v| humantime::parse_rfc3339(&v).ok());
        Self {
            id: wire.id,
            email: wire.email,
            created_at: time(wire.created_at),
            updated_at: time(wire.updated_at),
        }
    }
}

fn key() -> Option<Arc<str>> {
    Some(Arc::from(crate::domain::random_uuid()))
}

fn json<T: Serialize>(body: &T) -> Option<bytes::Bytes> {
    serde_json::to_vec(body).ok().map(bytes::Bytes::from)
}

impl Client {
    fn contacts_url(&self, organization_id: &OrganizationId) -> url::Url {
        let mut url = with_segment(&self.inner.urls.organizations, organization_id.as_str());
        if let Ok(mut path) = url.path_segments_mut() {
            path.push("it_contacts");
        }
        url
    }

    fn contact_url(
        &self,
        organization_id: &OrganizationId,
        contact_id: &str,
        action: Option<&str>,
    ) -> url::Url {
        let mut url = with_segment(&self.contacts_url(organization_id), contact_id);
        if let (Some(action), Ok(mut path)) = (action, url.path_segments_mut()) {
            path.push(action);
        }
        url
    }

    /// Every IT contact of the organization.
    pub async fn list_it_contacts(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
    ) -> Result<Vec<ItContact>, Error> {
        let url = self.contacts_url(organization_id);
        let wires: Vec<ContactWire> = self.list_all(call, &LIST_CONTACTS, &url).await?;
        Ok(wires.into_iter().map(ItContact::from).collect())
    }

    /// `POST .../it_contacts`: adds the address. WorkOS answers 409 `it_contact_already_exists`
    /// for an address it already has.
    pub async fn create_it_contact(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
        invitee: &Invitee,
    ) -> Result<ItContact, Error> {
        let body = json(&CreateContactWire {
            email: invitee.as_str(),
        });
        let url = self.contacts_url(organization_id);
        let answer = self.send(call, &CREATE_CONTACT, url, body, key()).await?;
        Ok(decode::<ContactWire>(&answer)?.into())
    }

    /// `DELETE .../it_contacts/{contact_id}`: WorkOS revokes the contact's setup links with it.
    pub async fn delete_it_contact(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
        contact_id: &str,
    ) -> Result<(), Error> {
        let url = self.contact_url(organization_id, contact_id, None);
        self.send(call, &DELETE_CONTACT, url, None, None)
            .await
            .map(drop)
    }

    /// `POST .../{contact_id}/invite`: WorkOS e-mails the contact a setup link. 409
    /// `it_contact_invitation_already_active` while the organization has an active invitation.
    pub async fn invite_it_contact(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
        contact_id: &str,
        intents: &[InvitationIntent],
    ) -> Result<(), Error> {
        let body = json(&InviteWire {
            intents: intents.iter().map(|i| i.workos_name()).collect(),
        });
        let url = self.contact_url(organization_id, contact_id, Some("invite"));
        self.send(call, &INVITE_CONTACT, url, body, key())
            .await
            .map(drop)
    }

    /// `POST .../{contact_id}/revoke`: revokes the organization's active invitation.
    pub async fn revoke_invitation(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
        contact_id: &str,
    ) -> Result<(), Error> {
        let url = self.contact_url(organization_id, contact_id, Some("revoke"));
        let body = Some(bytes::Bytes::from_static(b"{}"));
        self.send(call, &REVOKE_INVITATION, url, body, key())
            .await
            .map(drop)
    }
}
