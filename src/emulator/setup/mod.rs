//! What an Admin Portal setup leaves behind at WorkOS: SSO connections, directories, the audit
//! log configuration with its log stream. Each object renders itself in WorkOS's REST shape and
//! in the payload shapes of the events that announce it. [`ops`] holds the state changes, shared
//! by the portal pages and the control API so both do exactly the same thing.

pub(crate) mod ops;

use std::time::SystemTime;

use serde_json::{Value, json};

use super::state::{Domain, timestamp};

/// The SSO providers the portal's form offers.
pub(crate) const PORTAL_SSO_PROVIDERS: [(&str, &str); 4] = [
    ("OktaSAML", "Okta (SAML)"),
    ("AzureSAML", "Microsoft Entra ID (SAML)"),
    ("GoogleSAML", "Google Workspace (SAML)"),
    ("GenericSAML", "Other SAML 2.0 provider"),
];

/// The directory providers the portal's form offers.
pub(crate) const PORTAL_DSYNC_PROVIDERS: [(&str, &str); 4] = [
    ("okta scim v2.0", "Okta (SCIM)"),
    ("azure scim v2.0", "Microsoft Entra ID (SCIM)"),
    ("gsuite directory", "Google Workspace"),
    ("generic scim v2.0", "Other SCIM 2.0 provider"),
];

/// The log stream destinations the portal's form offers.
pub(crate) const PORTAL_LOG_STREAM_TYPES: [(&str, &str); 4] = [
    ("Datadog", "Datadog"),
    ("Splunk", "Splunk"),
    ("S3", "Amazon S3"),
    ("GenericHttps", "HTTPS endpoint"),
];

/// Every connection type WorkOS names (its spec and the official Python SDK together).
pub(crate) const CONNECTION_TYPES: [&str; 53] = [
    "Pending",
    "ADFSSAML",
    "AdpOidc",
    "AppleOAuth",
    "Auth0Migration",
    "Auth0SAML",
    "AzureSAML",
    "BitbucketOAuth",
    "CasSAML",
    "ClassLinkSAML",
    "CleverOIDC",
    "CloudflareSAML",
    "CyberArkSAML",
    "DiscordOAuth",
    "DuoSAML",
    "EntraIdOIDC",
    "GenericOIDC",
    "GenericSAML",
    "GitHubOAuth",
    "GitLabOAuth",
    "GoogleOAuth",
    "GoogleOIDC",
    "GoogleSAML",
    "GrokOAuth",
    "XOAuth",
    "IntuitOAuth",
    "JumpCloudSAML",
    "KeycloakSAML",
    "LastPassSAML",
    "LinkedInOAuth",
    "LoginGovOidc",
    "MagicLink",
    "MicrosoftOAuth",
    "MiniOrangeSAML",
    "NetIqSAML",
    "OktaOIDC",
    "OktaSAML",
    "OneLoginSAML",
    "OracleSAML",
    "PingFederateSAML",
    "PingOneSAML",
    "RipplingSAML",
    "SalesforceSAML",
    "ShibbolethGenericSAML",
    "ShibbolethSAML",
    "SimpleSamlPhpSAML",
    "SalesforceOAuth",
    "SlackOAuth",
    "TestIdp",
    "VercelMarketplaceOAuth",
    "VercelOAuth",
    "VMwareSAML",
    "XeroOAuth",
];

/// Every directory type WorkOS's REST API names.
pub(crate) const DIRECTORY_TYPES: [&str; 21] = [
    "azure scim v2.0",
    "bamboohr",
    "breathe hr",
    "cezanne hr",
    "cyberark scim v2.0",
    "fourth hr",
    "generic scim v2.0",
    "gsuite directory",
    "hibob",
    "sailpoint scim v2.0",
    "jump cloud scim v2.0",
    "okta scim v2.0",
    "onelogin scim v2.0",
    "people hr",
    "personio",
    "pingfederate scim v2.0",
    "rippling scim v2.0",
    "s3",
    "sftp",
    "sftp workday",
    "workday",
];

/// Every log stream destination WorkOS names.
pub(crate) const LOG_STREAM_TYPES: [&str; 7] = [
    "AzureSentinel",
    "Datadog",
    "GenericHttps",
    "GoogleCloudStorage",
    "S3",
    "Snowflake",
    "Splunk",
];

/// The key providers a customer-managed key can live in.
pub(crate) const KEY_PROVIDERS: [&str; 3] = ["AWS_KMS", "GCP_KMS", "AZURE_KEY_VAULT"];

/// A connection's state. WorkOS also names `requires_type`, `draft` and `deleting`, whose
/// meanings it does not document; the emulator never reaches them: a connection is created
/// `validating` (configured, no sign-in yet) and removed at once on delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionState {
    Validating,
    Active,
    Inactive,
}

impl ConnectionState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

/// An SSO connection.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) connection_type: String,
    pub(crate) name: String,
    pub(crate) state: ConnectionState,
    /// `(id, domain)`: the organization's domains when the connection was configured, with the
    /// organization domains' ids (as in WorkOS's spec example; a 2021 recording had `domain_`
    /// ids of their own).
    pub(crate) domains: Vec<(String, String)>,
    /// Sent only in `connection.activated`/`.deactivated`, which require it.
    pub(crate) external_key: String,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
}

impl Connection {
    /// Whether this is a SAML connection, the kind whose certificates expire.
    pub(crate) fn is_saml(&self) -> bool {
        self.connection_type.ends_with("SAML")
    }

    /// The REST shape, with the deprecated `status` WorkOS still sends beside `state`.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "object": "connection",
            "id": self.id,
            "organization_id": self.organization_id,
            "connection_type": self.connection_type,
            "name": self.name,
            "state": self.state.as_str(),
            "status": if self.state == ConnectionState::Active { "linked" } else { "unlinked" },
            "domains": self.domains.iter().map(|(id, domain)| json!({
                "object": "connection_domain",
                "id": id,
                "domain": domain,
            })).collect::<Vec<_>>(),
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }

    /// `connection.activated` and `connection.deactivated`: the REST shape plus `external_key`.
    pub(crate) fn activation_payload(&self) -> Value {
        let mut value = self.to_json();
        if let Value::Object(map) = &mut value {
            map.insert("external_key".into(), json!(self.external_key));
        }
        value
    }

    /// `connection.deleted`: no `external_key`, `status` or `domains`; `state` is the state
    /// before deletion.
    pub(crate) fn deleted_payload(&self) -> Value {
        json!({
            "object": "connection",
            "id": self.id,
            "organization_id": self.organization_id,
            "connection_type": self.connection_type,
            "name": self.name,
            "state": self.state.as_str(),
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }

    /// The `connection` object of the certificate events.
    pub(crate) fn reference(&self) -> Value {
        json!({ "id": self.id, "organization_id": self.organization_id })
    }
}

/// A directory's state. WorkOS also names `validating` and `deleting`; the emulator links a
/// directory at once and removes it at once on delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectoryState {
    Linked,
    InvalidCredentials,
    Unlinked,
}

impl DirectoryState {
    /// As `GET /directories` names it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unlinked => "unlinked",
        }
    }

    /// As `dsync.*` events name it: `linked` is `active` there and `unlinked` is `inactive`.
    pub(crate) fn as_event_str(self) -> &'static str {
        match self {
            Self::Linked => "active",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unlinked => "inactive",
        }
    }
}

/// A Directory Sync directory.
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    pub(crate) id: String,
    pub(crate) organization_id: String,
    pub(crate) external_key: String,
    pub(crate) name: String,
    /// The organization's first domain when the directory was made, if it had one.
    pub(crate) domain: Option<String>,
    pub(crate) directory_type: String,
    pub(crate) state: DirectoryState,
    /// Sync counts: the emulator syncs no users, so they stay zero.
    pub(crate) users_active: u64,
    pub(crate) users_inactive: u64,
    pub(crate) groups: u64,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
}

impl Directory {
    /// The REST shape; `domain` is left out when there is none (it is optional).
    pub(crate) fn to_json(&self) -> Value {
        let mut value = json!({
            "object": "directory",
            "id": self.id,
            "organization_id": self.organization_id,
            "external_key": self.external_key,
            "name": self.name,
            "type": self.directory_type,
            "state": self.state.as_str(),
            "metadata": {
                "users": { "active": self.users_active, "inactive": self.users_inactive },
                "groups": self.groups,
            },
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        });
        if let (Some(domain), Value::Object(map)) = (&self.domain, &mut value) {
            map.insert("domain".into(), json!(domain));
        }
        value
    }

    /// The fields both `dsync.*` payloads share, in the event vocabulary.
    fn event_base(&self) -> Value {
        json!({
            "object": "directory",
            "id": self.id,
            "organization_id": self.organization_id,
            "type": self.directory_type,
            "state": self.state.as_event_str(),
            "name": self.name,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }

    /// `dsync.activated`: `domain` replaced by the organization's `domains`, plus `external_key`.
    pub(crate) fn activated_payload(&self, domains: &[Domain]) -> Value {
        let mut value = self.event_base();
        if let Value::Object(map) = &mut value {
            map.insert("external_key".into(), json!(self.external_key));
            map.insert(
                "domains".into(),
                domains
                    .iter()
                    .map(|d| {
                        json!({ "object": "organization_domain", "id": d.id, "domain": d.domain })
                    })
                    .collect(),
            );
        }
        value
    }

    /// `dsync.deleted`: without `external_key` or `domains`; `state` is the state before.
    pub(crate) fn deleted_payload(&self) -> Value {
        self.event_base()
    }
}

/// The state of an organization's audit log trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditState {
    Active,
    Disabled,
}

impl AuditState {
    /// WorkOS also names `inactive`; nothing the emulator does reaches it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

/// A log stream's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogStreamState {
    Active,
    Error,
}

impl LogStreamState {
    /// WorkOS also names `inactive` and `invalid`; the emulator reaches only these two.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Error => "error",
        }
    }
}

/// An organization's audit log stream.
#[derive(Debug, Clone)]
pub(crate) struct LogStream {
    pub(crate) id: String,
    pub(crate) stream_type: String,
    pub(crate) state: LogStreamState,
    /// Nothing is ever delivered, so this stays `None` (sent as `null`).
    pub(crate) last_synced_at: Option<SystemTime>,
    pub(crate) created_at: SystemTime,
}

/// An organization's audit log configuration.
#[derive(Debug, Clone)]
pub(crate) struct AuditConfig {
    pub(crate) organization_id: String,
    pub(crate) retention_period_in_days: u32,
    pub(crate) state: AuditState,
    pub(crate) log_stream: Option<LogStream>,
}

/// Retention of a new configuration: 30 days, WorkOS's example and smallest documented value.
pub(crate) const DEFAULT_RETENTION_DAYS: u32 = 30;

impl AuditConfig {
    pub(crate) fn new(organization_id: &str, state: AuditState) -> Self {
        Self {
            organization_id: organization_id.to_owned(),
            retention_period_in_days: DEFAULT_RETENTION_DAYS,
            state,
            log_stream: None,
        }
    }

    /// The REST shape; `log_stream` is left out when none is configured ("only present if a
    /// stream is configured").
    pub(crate) fn to_json(&self) -> Value {
        let mut value = json!({
            "organization_id": self.organization_id,
            "retention_period_in_days": self.retention_period_in_days,
            "state": self.state.as_str(),
        });
        if let (Some(stream), Value::Object(map)) = (&self.log_stream, &mut value) {
            map.insert(
                "log_stream".into(),
                json!({
                    "id": stream.id,
                    "type": stream.stream_type,
                    "state": stream.state.as_str(),
                    "last_synced_at": stream.last_synced_at.map(timestamp),
                    "created_at": timestamp(stream.created_at),
                }),
            );
        }
        value
    }
}
