//! The WorkOS endpoints the gateway uses, one method each: build the request from domain types,
//! send it through the stack, read the answer back into domain types.

use std::{sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::Method;
use serde::de::DeserializeOwned;

use super::{
    Call, Client, Error,
    cache::{Key, Source},
    transport::{Answer, Family, Route},
    wire, with_segment,
};
use crate::domain::{
    Cursor, ExternalId, LinkRequest, ListOrder, ListQuery, NewOrganization, Organization,
    OrganizationChanges, OrganizationId, OrganizationPage, RedirectUrl,
};

macro_rules! route {
    ($name:ident, $method:ident, $path:literal, $family:ident, $delete:literal) => {
        static $name: Route = Route {
            name: concat!(stringify!($method), " ", $path),
            method: Method::$method,
            family: Family::$family,
            delete: $delete,
            duplicates: false,
        };
    };
}

/// Sent twice, it makes two organizations (or meets its own as a conflict).
static CREATE_ORGANIZATION: Route = Route {
    name: "POST /organizations",
    method: Method::POST,
    family: Family::Organizations,
    delete: false,
    duplicates: true,
};
route!(
    GET_ORGANIZATION,
    GET,
    "/organizations/{id}",
    Organizations,
    false
);
route!(
    GET_BY_EXTERNAL_ID,
    GET,
    "/organizations/external_id/{external_id}",
    Organizations,
    false
);
route!(
    LIST_ORGANIZATIONS,
    GET,
    "/organizations",
    Organizations,
    false
);
route!(
    UPDATE_ORGANIZATION,
    PUT,
    "/organizations/{id}",
    Organizations,
    false
);
route!(
    DELETE_ORGANIZATION,
    DELETE,
    "/organizations/{id}",
    Organizations,
    true
);
route!(GENERATE_LINK, POST, "/portal/generate_link", Portal, false);
route!(REVOKE_LINK, POST, "/portal/revoke_link", Portal, false);

pub(super) fn decode<T: DeserializeOwned>(answer: &Answer) -> Result<T, Error> {
    serde_json::from_slice(&answer.body).map_err(|source| Error::Decode {
        status: answer.status.as_u16(),
        request_id: answer.request_id.clone(),
        source: Arc::new(source),
    })
}

fn json<T: serde::Serialize>(body: &T) -> Option<Bytes> {
    // Serialising the client's own wire structs cannot fail: all keys are strings.
    serde_json::to_vec(body).ok().map(Bytes::from)
}

fn new_key() -> Option<Arc<str>> {
    Some(Arc::from(crate::domain::random_uuid()))
}

impl Client {
    /// `POST /organizations`, with the request's idempotency key.
    pub async fn create_organization(
        &self,
        call: &mut Call,
        new: &NewOrganization,
    ) -> Result<Organization, Error> {
        let body = wire::CreateOrganizationWire {
            name: &new.name,
            domain_data: new.domains.iter().map(Into::into).collect(),
            metadata: new.metadata.pairs(),
            external_id: new.external_id.as_ref().map(ExternalId::as_str),
        };
        let url = self.inner.urls.organizations.clone();
        let key = Some(Arc::from(new.idempotency_key.as_str()));
        let answer = self
            .send(call, &CREATE_ORGANIZATION, url, json(&body), key)
            .await?;
        let organization = decode::<wire::OrganizationWire>(&answer)?.into_domain()?;
        self.inner.cache.store(&organization).await;
        // Other replicas may remember its external id as missing.
        self.announce_change(organization.id.as_str());
        Ok(organization)
    }

    /// `GET /organizations/external_id/{external_id}`, read fresh (never from the cache, nor
    /// shared with a lookup already in flight): what WorkOS holds now, after a create whose
    /// answer was lost.
    pub async fn read_back(
        &self,
        call: &mut Call,
        external_id: &ExternalId,
    ) -> Result<Option<Organization>, Error> {
        let key = Key::External(external_id.as_str().to_owned());
        self.inner.cache.forget_absence(&key).await;
        let url = with_segment(&self.inner.urls.by_external_id, external_id.as_str());
        match self.send(call, &GET_BY_EXTERNAL_ID, url, None, None).await {
            Ok(answer) => {
                let organization = decode::<wire::OrganizationWire>(&answer)?.into_domain()?;
                self.inner.cache.store(&organization).await;
                self.announce_change(organization.id.as_str());
                Ok(Some(organization))
            }
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /organizations/{id}`, cached.
    pub async fn get_organization(
        &self,
        call: &mut Call,
        id: &OrganizationId,
    ) -> Result<Organization, Error> {
        let url = with_segment(&self.inner.urls.organizations, id.as_str());
        self.lookup(
            call,
            Key::Id(id.as_str().to_owned()),
            &GET_ORGANIZATION,
            url,
        )
        .await
    }

    /// `GET /organizations/external_id/{external_id}`, cached.
    pub async fn get_organization_by_external_id(
        &self,
        call: &mut Call,
        external_id: &ExternalId,
    ) -> Result<Organization, Error> {
        let url = with_segment(&self.inner.urls.by_external_id, external_id.as_str());
        let key = Key::External(external_id.as_str().to_owned());
        self.lookup(call, key, &GET_BY_EXTERNAL_ID, url).await
    }

    /// A cached read of one organization; concurrent identical reads share one request.
    async fn lookup(
        &self,
        call: &mut Call,
        key: Key,
        route: &'static Route,
        url: url::Url,
    ) -> Result<Organization, Error> {
        // Each lookup runs as its own call (the cache may run it for several callers); the id
        // WorkOS gives this caller's request is noted back on `call`.
        let request_id = std::sync::OnceLock::new();
        let context = call.context.clone();
        let fetch = || {
            let url = url.clone();
            let context = context.clone();
            let request_id = &request_id;
            async move {
                let mut own = Call {
                    context,
                    workos_request_id: None,
                    create_in_doubt: Arc::default(),
                };
                let answer = self.send(&mut own, route, url, None, None).await;
                if let Some(id) = own.workos_request_id {
                    let _ = request_id.set(id);
                }
                decode::<wire::OrganizationWire>(&answer?)?.into_domain()
            }
        };
        let (result, source) = self.inner.cache.get_or_fetch(key, fetch).await;
        self.inner.observe.cache(source == Source::Cache);
        call.note(request_id.get().map(String::as_str));
        result
    }

    /// `GET /organizations` with WorkOS's cursor parameters (never cached).
    pub async fn list_organizations(
        &self,
        call: &mut Call,
        query: &ListQuery,
    ) -> Result<OrganizationPage, Error> {
        let mut url = self.inner.urls.organizations.clone();
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("limit", &query.limit.to_string());
            pairs.append_pair(
                "order",
                match query.order {
                    ListOrder::Ascending => "asc",
                    ListOrder::Descending => "desc",
                },
            );
            match &query.cursor {
                Some(Cursor::Before(id)) => pairs.append_pair("before", id.as_str()),
                Some(Cursor::After(id)) => pairs.append_pair("after", id.as_str()),
                None => &mut pairs,
            };
            if !query.domains.is_empty() {
                // Comma-joined, as the OpenAPI spec declares (`style: form, explode: false`).
                pairs.append_pair("domains", &query.domains.join(","));
            }
        }
        let answer = self
            .send(call, &LIST_ORGANIZATIONS, url, None, None)
            .await?;
        decode::<wire::ListWire>(&answer)?.into_domain()
    }

    /// `PUT /organizations/{id}` with only the changed fields; `null` clears a field. A PUT of
    /// the same body is idempotent, so it carries a key and may be retried.
    pub async fn update_organization(
        &self,
        call: &mut Call,
        id: &OrganizationId,
        changes: &OrganizationChanges,
    ) -> Result<Organization, Error> {
        let mut body = serde_json::Map::new();
        if let Some(name) = &changes.name {
            body.insert("name".into(), name.clone().into());
        }
        if let Some(domains) = &changes.domains {
            let data: Vec<wire::DomainDataWire<'_>> = domains.iter().map(Into::into).collect();
            body.insert(
                "domain_data".into(),
                serde_json::to_value(data).unwrap_or_default(),
            );
        }
        if let Some(metadata) = &changes.metadata {
            body.insert(
                "metadata".into(),
                serde_json::to_value(metadata.pairs()).unwrap_or_default(),
            );
        }
        if let Some(external_id) = &changes.external_id {
            body.insert(
                "external_id".into(),
                external_id.as_ref().map(|e| e.as_str().to_owned()).into(),
            );
        }
        if let Some(stripe) = &changes.stripe_customer_id {
            body.insert("stripe_customer_id".into(), stripe.clone().into());
        }
        let url = with_segment(&self.inner.urls.organizations, id.as_str());
        // Whatever happens, the cached copy may now be stale.
        self.inner.cache.forget(id.as_str()).await;
        let answer = self
            .send(call, &UPDATE_ORGANIZATION, url, json(&body), new_key())
            .await?;
        let organization = decode::<wire::OrganizationWire>(&answer)?.into_domain()?;
        self.inner.cache.forget(id.as_str()).await;
        self.inner.cache.store(&organization).await;
        self.announce_change(id.as_str());
        Ok(organization)
    }

    /// `DELETE /organizations/{id}`; WorkOS answers 202 and the body is ignored. Never retried:
    /// WorkOS allows only 50 deletes a minute.
    pub async fn delete_organization(
        &self,
        call: &mut Call,
        id: &OrganizationId,
    ) -> Result<(), Error> {
        let url = with_segment(&self.inner.urls.organizations, id.as_str());
        self.inner.cache.forget(id.as_str()).await;
        let result = self.send(call, &DELETE_ORGANIZATION, url, None, None).await;
        self.inner.cache.forget(id.as_str()).await;
        self.announce_change(id.as_str());
        result.map(drop)
    }

    /// `POST /portal/generate_link`. Returns the link and when it was minted. It carries an
    /// idempotency key, as the official SDKs send, so a lost answer can be retried: at worst
    /// WorkOS mints a second link for the same admin.
    pub async fn generate_link(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
        request: &LinkRequest,
        return_url: Option<&RedirectUrl>,
        success_url: Option<&RedirectUrl>,
    ) -> Result<(String, SystemTime), Error> {
        let body = wire::GenerateLinkWire {
            organization: organization_id.as_str(),
            intent: request.intent.workos_name(),
            return_url: return_url.map(RedirectUrl::as_str),
            success_url: success_url.map(RedirectUrl::as_str),
            external_user_id: request.external_user_id.as_deref(),
            it_contact_emails: request
                .it_contact_emails
                .iter()
                .map(|e| e.as_str())
                .collect(),
        };
        let minted = SystemTime::now();
        let url = self.inner.urls.generate_link.clone();
        let answer = self
            .send(call, &GENERATE_LINK, url, json(&body), new_key())
            .await?;
        Ok((decode::<wire::LinkWire>(&answer)?.link, minted))
    }

    /// `POST /portal/revoke_link` (idempotent: revoking twice changes nothing).
    pub async fn revoke_links(
        &self,
        call: &mut Call,
        organization_id: &OrganizationId,
        external_user_id: &str,
    ) -> Result<(), Error> {
        let body = wire::RevokeLinkWire {
            organization: organization_id.as_str(),
            external_user_id,
        };
        let url = self.inner.urls.revoke_link.clone();
        self.send(call, &REVOKE_LINK, url, json(&body), new_key())
            .await
            .map(drop)
    }
}
