//! Validated domain types. Requests are parsed into these at the edge (`crate::grpc`), so the
//! core and the WorkOS client only ever see values that WorkOS will accept.
//!
//! Limits follow the stricter of WorkOS's documentation and its OpenAPI spec, so nothing that
//! passes here is refused upstream for its shape.

use std::{collections::BTreeMap, fmt, time::SystemTime};

pub mod invitation;
pub mod setup;

/// WorkOS's documented metadata limits.
pub const METADATA_MAX_PAIRS: usize = 10;
/// Longest metadata key, in ASCII characters.
pub const METADATA_MAX_KEY: usize = 40;
/// Longest metadata value, in ASCII characters.
pub const METADATA_MAX_VALUE: usize = 600;
/// Longest external id WorkOS documents.
pub const EXTERNAL_ID_MAX: usize = 64;
/// Most IT contacts a portal link may grant access to.
pub const IT_CONTACTS_MAX: usize = 20;
/// Whether `c` is a control character or an invisible bidirectional formatting character (the
/// kind that makes text read differently from what it holds).
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Domains an organization may claim in one request (WorkOS documents no limit; a sensible one).
pub const DOMAINS_MAX: usize = 100;
/// Domain filters in one ListOrganizations request, so its URL stays well under what servers take.
pub const DOMAIN_FILTERS_MAX: usize = 20;
/// Longest organization name accepted.
pub const NAME_MAX: usize = 256;
/// Longest caller-chosen idempotency key.
pub const REQUEST_ID_MAX: usize = 128;
/// Longest external user id accepted.
pub const EXTERNAL_USER_ID_MAX: usize = 256;
/// How long a portal link works after WorkOS mints it.
pub const LINK_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5 * 60);

// === Identifiers ===

/// A random UUID (v4) for request ids and idempotency keys, from the thread's CSPRNG rather than
/// a system call per id.
pub fn random_uuid() -> String {
    use rand::Rng as _;
    uuid::Builder::from_random_bytes(rand::rng().random())
        .into_uuid()
        .to_string()
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// A WorkOS organization id: `org_` followed by a 26-character ULID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrganizationId(String);

impl OrganizationId {
    /// Parses an id, explaining what is wrong with a bad one.
    pub fn parse(value: &str) -> Result<Self, String> {
        let Some(ulid) = value.strip_prefix("org_") else {
            return Err("must be a WorkOS organization id starting with `org_`".into());
        };
        let crockford =
            |c: char| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c));
        if ulid.len() != 26 || !ulid.chars().all(crockford) {
            return Err("must be `org_` followed by a 26-character ULID".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as WorkOS writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Your own identifier for an organization: 1 to 64 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

impl ExternalId {
    /// Parses an external id, explaining what is wrong with a bad one.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("must not be empty".into());
        }
        if value.len() > EXTERNAL_ID_MAX {
            return Err(format!("must be at most {EXTERNAL_ID_MAX} characters"));
        }
        if !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        if value == "." || value == ".." {
            return Err("must not be `.` or `..`".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The external id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organization named either way a caller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OrganizationRef {
    /// By WorkOS id.
    Id(OrganizationId),
    /// By your external id.
    External(ExternalId),
}

impl fmt::Display for OrganizationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::External(id) => write!(f, "external_id:{id}"),
        }
    }
}

// === Portal ===

/// What an Admin Portal session is for: the seven intents WorkOS accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Intent {
    /// Single sign-on setup.
    Sso,
    /// Directory sync setup.
    Dsync,
    /// Audit logs.
    AuditLogs,
    /// Log streams.
    LogStreams,
    /// Domain verification.
    DomainVerification,
    /// SAML certificate renewal.
    CertificateRenewal,
    /// Bring your own encryption key.
    BringYourOwnKey,
}

impl Intent {
    /// Every intent, in the order of the public enum.
    pub const ALL: [Intent; 7] = [
        Intent::Sso,
        Intent::Dsync,
        Intent::AuditLogs,
        Intent::LogStreams,
        Intent::DomainVerification,
        Intent::CertificateRenewal,
        Intent::BringYourOwnKey,
    ];

    /// The name WorkOS uses on the wire.
    pub fn workos_name(self) -> &'static str {
        match self {
            Self::Sso => "sso",
            Self::Dsync => "dsync",
            Self::AuditLogs => "audit_logs",
            Self::LogStreams => "log_streams",
            Self::DomainVerification => "domain_verification",
            Self::CertificateRenewal => "certificate_renewal",
            Self::BringYourOwnKey => "bring_your_own_key",
        }
    }

    /// Parses a WorkOS wire name (also used in configuration).
    pub fn from_workos_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.workos_name() == name)
    }

    /// What an admin does with a link of this intent.
    pub fn description(self) -> &'static str {
        match self {
            Self::Sso => "Set up a single sign-on connection (SAML or OIDC)",
            Self::Dsync => "Set up directory sync (SCIM or a directory provider)",
            Self::AuditLogs => "View and export audit logs",
            Self::LogStreams => "Stream audit logs to the customer's SIEM",
            Self::DomainVerification => "Verify ownership of a domain",
            Self::CertificateRenewal => "Renew an expiring SAML certificate",
            Self::BringYourOwnKey => "Configure a customer-managed encryption key",
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.workos_name())
    }
}

/// A return or success URL: absolute `https` to a DNS host, or plain `http` to a loopback host
/// when the configuration allows it (development). Anything that could make two readers disagree
/// about where the URL leads is refused: non-ASCII text, backslashes, user info, percent-encoded
/// or trailing-dot hosts, IP literals, fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUrl(url::Url);

impl RedirectUrl {
    /// Parses a URL, explaining what is wrong with a bad one.
    pub fn parse(value: &str, allow_http_loopback: bool) -> Result<Self, String> {
        if !value.is_ascii() {
            return Err("must be ASCII (write an internationalized host in punycode, xn--)".into());
        }
        if value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err("must not contain spaces, control characters or backslashes".into());
        }
        let url = url::Url::parse(value).map_err(|_| "must be an absolute URL".to_owned())?;
        let authority = value
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
            .ok_or_else(|| "must be an absolute URL such as https://app.example.com/".to_owned())?;
        if authority.contains('@') || !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain user info".into());
        }
        if authority.contains('%') {
            return Err("must not percent-encode the host".into());
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(domain)) => {
                if domain.ends_with('.') {
                    return Err("must not end the host with a dot".into());
                }
                domain == "localhost"
            }
            Some(url::Host::Ipv4(ip)) if allow_http_loopback && ip.is_loopback() => true,
            Some(url::Host::Ipv6(ip)) if allow_http_loopback && ip.is_loopback() => true,
            Some(_) => return Err("must name a DNS host, not an IP address".into()),
            None => return Err("must name a host".into()),
        };
        if url.fragment().is_some() {
            return Err("must not contain a fragment".into());
        }
        match url.scheme() {
            "https" => {}
            "http" if allow_http_loopback && loopback => {}
            "http" if allow_http_loopback => {
                return Err("must use https (http is allowed for localhost only)".into());
            }
            _ => return Err("must use https".into()),
        }
        Ok(Self(url))
    }

    /// The URL as sent to WorkOS.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// `scheme://host[:port]`, the part that is safe to log and audit.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// The scheme.
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// The lower-case host.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// The explicit or default port.
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or_default()
    }

    /// The normalised path.
    pub fn path(&self) -> &str {
        self.0.path()
    }

    /// The query, if any.
    pub fn query(&self) -> Option<&str> {
        self.0.query()
    }
}

/// An e-mail address, checked for shape only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address, explaining what is wrong with a bad one.
    pub fn parse(value: &str) -> Result<Self, String> {
        let bad = || "must be an e-mail address such as it@example.com".to_owned();
        let (local, domain) = value.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_graphic() && !"@()<>[]:;,\\\"".contains(c));
        if value.len() > 254 || !domain_ok || !local_ok {
            return Err(bad());
        }
        Ok(Self(value.to_owned()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a portal link is asked for, validated.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    /// The organization.
    pub organization: OrganizationRef,
    /// What the session is for.
    pub intent: Intent,
    /// Where the portal's "back" link goes.
    pub return_url: Option<RedirectUrl>,
    /// Where the admin lands when done.
    pub success_url: Option<RedirectUrl>,
    /// Your id of the admin, for revocation.
    pub external_user_id: Option<String>,
    /// IT contacts granted access.
    pub it_contact_emails: Vec<Email>,
}

/// A minted link. The link itself is a bearer credential: Debug never shows it.
#[derive(Clone)]
pub struct PortalLink {
    /// The URL.
    pub link: String,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// The organization it is for.
    pub organization_id: OrganizationId,
    /// The intent it was minted for.
    pub intent: Intent,
}

impl fmt::Debug for PortalLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortalLink")
            .field("link", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("organization_id", &self.organization_id)
            .field("intent", &self.intent)
            .finish()
    }
}

// === Organizations ===

/// Metadata pairs within WorkOS's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Checks the pairs, explaining the first problem.
    pub fn parse(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let map: BTreeMap<String, String> = pairs.into_iter().collect();
        if map.len() > METADATA_MAX_PAIRS {
            return Err(format!("must hold at most {METADATA_MAX_PAIRS} keys"));
        }
        for (key, value) in &map {
            if key.is_empty() || key.len() > METADATA_MAX_KEY || !key.is_ascii() {
                return Err(format!(
                    "key {key:?} must be 1 to {METADATA_MAX_KEY} ASCII characters"
                ));
            }
            if value.len() > METADATA_MAX_VALUE || !value.is_ascii() {
                return Err(format!(
                    "value of {key:?} must be at most {METADATA_MAX_VALUE} ASCII characters"
                ));
            }
        }
        Ok(Self(map))
    }

    /// The pairs.
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// A domain to claim, and whether you assert it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainClaim {
    /// The lower-cased domain.
    pub domain: String,
    /// `true` to claim it verified (WorkOS records a manual verification).
    pub verified: bool,
}

impl DomainClaim {
    /// Parses a domain name, explaining what is wrong with a bad one.
    pub fn parse(domain: &str, verified: bool) -> Result<Self, String> {
        let domain = domain.trim().to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let ok = domain.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            return Err("must be a domain name such as example.com".into());
        }
        Ok(Self { domain, verified })
    }
}

/// A new organization, validated.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    /// Display name.
    pub name: String,
    /// Domains to claim.
    pub domains: Vec<DomainClaim>,
    /// Metadata.
    pub metadata: Metadata,
    /// Your external id.
    pub external_id: Option<ExternalId>,
    /// Idempotency key sent to WorkOS, the same on every attempt.
    pub idempotency_key: String,
    /// Whether the caller chose the key (its `request_id`), so a retry may come with it again.
    pub caller_chose_key: bool,
}

/// Changes to an organization; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OrganizationChanges {
    /// New name.
    pub name: Option<String>,
    /// New domain set (replaces the old one).
    pub domains: Option<Vec<DomainClaim>>,
    /// New metadata (replaces the old map).
    pub metadata: Option<Metadata>,
    /// New external id; `Some(None)` clears it.
    pub external_id: Option<Option<ExternalId>>,
    /// New Stripe customer id; `Some(None)` clears it.
    pub stripe_customer_id: Option<Option<String>>,
}

/// A domain's verification state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    /// Not yet proven.
    Pending,
    /// Proven.
    Verified,
    /// Verification failed.
    Failed,
    /// Added through WorkOS's deprecated domains list.
    LegacyVerified,
    /// A state this gateway does not know yet.
    Unknown,
}

/// How a domain is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationStrategy {
    /// DNS TXT record.
    Dns,
    /// Asserted by the API caller.
    Manual,
    /// Not reported, or not known to this gateway.
    Unknown,
}

/// An organization domain as WorkOS reports it.
#[derive(Debug, Clone)]
pub struct Domain {
    /// WorkOS id.
    pub id: String,
    /// Domain name.
    pub domain: String,
    /// Verification state.
    pub state: DomainState,
    /// Verification strategy.
    pub verification_strategy: VerificationStrategy,
    /// DNS TXT record prefix.
    pub verification_prefix: Option<String>,
    /// DNS TXT record value.
    pub verification_token: Option<String>,
}

/// An organization as WorkOS reports it.
#[derive(Debug, Clone)]
pub struct Organization {
    /// WorkOS id.
    pub id: OrganizationId,
    /// Display name.
    pub name: String,
    /// Claimed domains.
    pub domains: Vec<Domain>,
    /// Metadata pairs.
    pub metadata: BTreeMap<String, String>,
    /// Your external id.
    pub external_id: Option<String>,
    /// Stripe customer id.
    pub stripe_customer_id: Option<String>,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
}

/// Creation-time order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    /// Oldest first.
    Ascending,
    /// Newest first.
    Descending,
}

/// A position in a listing: before or after an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The page before this organization.
    Before(OrganizationId),
    /// The page after this organization.
    After(OrganizationId),
}

/// One page's query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Page size, 1 to 100.
    pub limit: u8,
    /// Where the page starts.
    pub cursor: Option<Cursor>,
    /// Domains filter.
    pub domains: Vec<String>,
    /// Order.
    pub order: ListOrder,
}

/// One page of organizations with WorkOS's cursors.
#[derive(Debug, Clone)]
pub struct OrganizationPage {
    /// The organizations.
    pub organizations: Vec<Organization>,
    /// Cursor for the previous page, if there is one.
    pub before: Option<OrganizationId>,
    /// Cursor for the next page, if there is one.
    pub after: Option<OrganizationId>,
}

#[cfg(test)]
mod tests;
