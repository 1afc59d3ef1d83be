//! The WorkOS REST client: one pooled HTTP client over rustls, the base URL and key from
//! configuration, typed requests and responses. WorkOS's JSON stays in the private `wire`
//! module; callers see `crate::domain` types and a typed [`Error`].
//!
//! The API key is read only here, as the Bearer header, and never formatted anywhere.

mod error;
mod wire;

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

pub use error::Error;

use crate::domain::{
    ExternalId, Intent, LinkRequest, ListOrder, ListQuery, NewOrganization, Organization,
    OrganizationChanges, OrganizationId, OrganizationPage, RedirectUrl,
};

/// What the client needs to talk to WorkOS.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://api.workos.com`, or an emulator.
    pub base_url: Url,
    /// The WorkOS API key.
    pub api_key: SecretString,
    /// The longest one HTTP attempt may take.
    pub request_timeout: Duration,
}

/// A cheap-to-clone handle on the WorkOS API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: Url,
    authorization: header::HeaderValue,
}

/// What a successful call answered, besides its body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    request_id: Option<String>,
    body: bytes::Bytes,
}

impl Client {
    /// Builds the client. Fails only if the TLS stack cannot be initialised.
    pub fn new(settings: &Settings) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "portal-gateway/",
                env!("CARGO_PKG_VERSION"),
                " (rust)"
            ))
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(Error::Transport)?;
        let mut authorization =
            header::HeaderValue::try_from(format!("Bearer {}", settings.api_key.expose_secret()))
                .map_err(|_| Error::Malformed { field: "api_key" })?;
        // Keeps the key out of any Debug print of a request's headers.
        authorization.set_sensitive(true);
        Ok(Self {
            http,
            base_url: settings.base_url.clone(),
            authorization,
        })
    }

    /// `base_url` plus path segments, each percent-encoded as the official SDKs do.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Error> {
        let mut request = self
            .http
            .request(method, url)
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.map_err(Error::from_reqwest)?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(Error::from_reqwest)?;
        if status.is_success() {
            return Ok(Answer {
                status,
                request_id,
                body,
            });
        }
        let parsed: wire::ErrorWire = serde_json::from_slice(&body).unwrap_or_default();
        let message = match parsed.message {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        Err(Error::Api {
            status: status.as_u16(),
            code: parsed.code,
            message,
            field_errors: parsed
                .errors
                .into_iter()
                .map(|e| (e.field.unwrap_or_default(), e.code.unwrap_or_default()))
                .collect(),
            request_id,
            retry_after: headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64),
        })
    }

    fn decode<T: DeserializeOwned>(answer: &Answer) -> Result<T, Error> {
        serde_json::from_slice(&answer.body).map_err(|source| Error::Decode {
            status: answer.status.as_u16(),
            request_id: answer.request_id.clone(),
            source,
        })
    }

    fn json<T: serde::Serialize>(body: &T) -> Option<Vec<u8>> {
        // Serialising our own wire structs cannot fail: all keys are strings.
        serde_json::to_vec(body).ok()
    }

    /// `POST /organizations`, with the request's idempotency key.
    pub async fn create_organization(&self, new: &NewOrganization) -> Result<Organization, Error> {
        let body = wire::CreateOrganizationWire {
            name: &new.name,
            domain_data: new.domains.iter().map(Into::into).collect(),
            metadata: new.metadata.pairs(),
            external_id: new.external_id.as_ref().map(ExternalId::as_str),
        };
        let answer = self
            .call(
                Method::POST,
                self.url(&["organizations"]),
                Self::json(&body),
                Some(&new.idempotency_key),
            )
            .await?;
        Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()
    }

    /// `GET /organizations/{id}`.
    pub async fn get_organization(&self, id: &OrganizationId) -> Result<Organization, Error> {
        let answer = self
            .call(
                Method::GET,
                self.url(&["organizations", id.as_str()]),
                None,
                None,
            )
            .await?;
        Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()
    }

    /// `GET /organizations/external_id/{external_id}`.
    pub async fn get_organization_by_external_id(
        &self,
        external_id: &ExternalId,
    ) -> Result<Organization, Error> {
        let url = self.url(&["organizations", "external_id", external_id.as_str()]);
        let answer = self.call(Method::GET, url, None, None).await?;
        Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()
    }

    /// `GET /organizations` with WorkOS's cursor parameters.
    pub async fn list_organizations(&self, query: &ListQuery) -> Result<OrganizationPage, Error> {
        let mut url = self.url(&["organizations"]);
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
                Some(crate::domain::Cursor::Before(id)) => {
                    pairs.append_pair("before", id.as_str());
                }
                Some(crate::domain::Cursor::After(id)) => {
                    pairs.append_pair("after", id.as_str());
                }
                None => {}
            }
            if !query.domains.is_empty() {
                // Comma-joined, as the OpenAPI spec declares (`style: form, explode: false`).
                pairs.append_pair("domains", &query.domains.join(","));
            }
        }
        let answer = self.call(Method::GET, url, None, None).await?;
        Self::decode::<wire::ListWire>(&answer)?.into_domain()
    }

    /// `PUT /organizations/{id}` with only the changed fields; `null` clears a field.
    pub async fn update_organization(
        &self,
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
        let url = self.url(&["organizations", id.as_str()]);
        let answer = self.call(Method::PUT, url, Self::json(&body), None).await?;
        Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()
    }

    /// `DELETE /organizations/{id}`; WorkOS answers 202 and the body is ignored.
    pub async fn delete_organization(&self, id: &OrganizationId) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            self.url(&["organizations", id.as_str()]),
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// `POST /portal/generate_link`. Returns the link and when it was minted.
    pub async fn generate_link(
        &self,
        organization_id: &OrganizationId,
        intent: Intent,
        request: &LinkRequest,
        return_url: Option<&RedirectUrl>,
        success_url: Option<&RedirectUrl>,
    ) -> Result<(String, SystemTime), Error> {
        let body = wire::GenerateLinkWire {
            organization: organization_id.as_str(),
            intent: intent.workos_name(),
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
        let url = self.url(&["portal", "generate_link"]);
        let answer = self
            .call(Method::POST, url, Self::json(&body), None)
            .await?;
        Ok((Self::decode::<wire::LinkWire>(&answer)?.link, minted))
    }

    /// `POST /portal/revoke_link`.
    pub async fn revoke_links(
        &self,
        organization_id: &OrganizationId,
        external_user_id: &str,
    ) -> Result<(), Error> {
        let body = wire::RevokeLinkWire {
            organization: organization_id.as_str(),
            external_user_id,
        };
        let url = self.url(&["portal", "revoke_link"]);
        self.call(Method::POST, url, Self::json(&body), None)
            .await?;
        Ok(())
    }
}
