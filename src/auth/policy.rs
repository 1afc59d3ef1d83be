//! The access policy: which caller may call which RPCs, for which intents and organizations,
//! returning to which URLs. Deny by default.
//!
//! **Invariant:** authorization is a pure function of (identity, request, policy): no I/O, no
//! clock, no globals. Handlers gather the facts (resolving an organization's external id when a
//! rule needs it) and call [`Policy::authorize`] explicitly.

use std::{collections::BTreeSet, fmt};

use crate::domain::{Intent, RedirectUrl};

mod invitees;

pub use invitees::{InviteDomains, InviteeVerdict};

/// Every RPC the policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rpc {
    /// `OrganizationService.CreateOrganization`
    CreateOrganization,
    /// `OrganizationService.GetOrganization`
    GetOrganization,
    /// `OrganizationService.ListOrganizations`
    ListOrganizations,
    /// `OrganizationService.UpdateOrganization`
    UpdateOrganization,
    /// `OrganizationService.DeleteOrganization`
    DeleteOrganization,
    /// `OrganizationService.EnsureOrganization`
    EnsureOrganization,
    /// `PortalService.GenerateLink`
    GenerateLink,
    /// `PortalService.RevokeLinks`
    RevokeLinks,
    /// `PortalService.ListIntents`
    ListIntents,
    /// `AccessService.CheckAccess` (about another identity; about yourself is always allowed)
    CheckAccess,
    /// `SetupService.GetSetupStatus`
    GetSetupStatus,
    /// `SetupService.WatchSetup`
    WatchSetup,
    /// `InvitationService.ListItContacts`
    ListItContacts,
    /// `InvitationService.AddItContact`
    AddItContact,
    /// `InvitationService.RemoveItContact`
    RemoveItContact,
    /// `InvitationService.InviteItContact`
    InviteItContact,
    /// `InvitationService.RevokeInvitation`
    RevokeInvitation,
}

impl Rpc {
    /// Every RPC.
    pub const ALL: [Rpc; 17] = [
        Rpc::CreateOrganization,
        Rpc::GetOrganization,
        Rpc::ListOrganizations,
        Rpc::UpdateOrganization,
        Rpc::DeleteOrganization,
        Rpc::EnsureOrganization,
        Rpc::GenerateLink,
        Rpc::RevokeLinks,
        Rpc::ListIntents,
        Rpc::CheckAccess,
        Rpc::GetSetupStatus,
        Rpc::WatchSetup,
        Rpc::ListItContacts,
        Rpc::AddItContact,
        Rpc::RemoveItContact,
        Rpc::InviteItContact,
        Rpc::RevokeInvitation,
    ];

    /// The method name, as written in policies.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateOrganization => "CreateOrganization",
            Self::GetOrganization => "GetOrganization",
            Self::ListOrganizations => "ListOrganizations",
            Self::UpdateOrganization => "UpdateOrganization",
            Self::DeleteOrganization => "DeleteOrganization",
            Self::EnsureOrganization => "EnsureOrganization",
            Self::GenerateLink => "GenerateLink",
            Self::RevokeLinks => "RevokeLinks",
            Self::ListIntents => "ListIntents",
            Self::CheckAccess => "CheckAccess",
            Self::GetSetupStatus => "GetSetupStatus",
            Self::WatchSetup => "WatchSetup",
            Self::ListItContacts => "ListItContacts",
            Self::AddItContact => "AddItContact",
            Self::RemoveItContact => "RemoveItContact",
            Self::InviteItContact => "InviteItContact",
            Self::RevokeInvitation => "RevokeInvitation",
        }
    }

    /// Parses a method name, bare (`GenerateLink`) or qualified
    /// (`adminportal.v1.PortalService/GenerateLink`).
    pub fn from_name(name: &str) -> Option<Self> {
        let bare = name.rsplit(['/', '.']).next().unwrap_or(name);
        Self::ALL.into_iter().find(|rpc| rpc.name() == bare)
    }

    /// RPCs that mint a link or change state: every call of these is audited.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Self::CreateOrganization
                | Self::UpdateOrganization
                | Self::DeleteOrganization
                | Self::EnsureOrganization
                | Self::GenerateLink
                | Self::RevokeLinks
                | Self::AddItContact
                | Self::RemoveItContact
                | Self::InviteItContact
                | Self::RevokeInvitation
        )
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `*` glob over external ids: `acme-*`, `*-eu`, `tenant-*-prod`, or an exact id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern; `*` matches any run of characters.
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let parts: Vec<&str> = self.0.split('*').collect();
        if parts.len() == 1 {
            return self.0 == value;
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !value.starts_with(first)
            || !value[first.len()..].ends_with(last)
            || value.len() < first.len() + last.len()
        {
            return false;
        }
        let mut rest = &value[first.len()..value.len() - last.len()];
        for middle in &parts[1..parts.len() - 1] {
            match rest.find(middle) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Which organizations a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizationScope {
    /// Every organization (and listing them).
    All,
    /// Only these WorkOS ids, and organizations whose external id matches a pattern.
    Listed {
        /// WorkOS ids.
        ids: BTreeSet<String>,
        /// External-id patterns.
        external_ids: Vec<Pattern>,
    },
}

/// An allowed return or success URL prefix: exact scheme, host and port, and optionally a path
/// prefix that must end at a segment boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// Any URL that passed validation (development only).
    Any,
    /// One origin, optionally under a path.
    Origin {
        /// `https` (or `http` for loopback in development).
        scheme: String,
        /// Lower-case host.
        host: String,
        /// Explicit or default port.
        port: u16,
        /// Path prefix such as `/settings`; `None` allows every path.
        path_prefix: Option<String>,
    },
}

impl OriginRule {
    /// Parses `https://host[:port][/path]` (validated with the same rules as request URLs) or `*`.
    pub fn parse(value: &str, allow_http_loopback: bool) -> Result<Self, String> {
        if value == "*" {
            return Ok(Self::Any);
        }
        let url = RedirectUrl::parse(value, allow_http_loopback)?;
        if url.query().is_some() {
            return Err("must not contain a query".into());
        }
        let path = url.path().trim_end_matches('/');
        Ok(Self::Origin {
            scheme: url.scheme().to_owned(),
            host: url.host().to_owned(),
            port: url.port(),
            path_prefix: (!path.is_empty()).then(|| path.to_owned()),
        })
    }

    /// Whether `url` is allowed by this rule.
    pub fn allows(&self, url: &RedirectUrl) -> bool {
        match self {
            Self::Any => true,
            Self::Origin {
                scheme,
                host,
                port,
                path_prefix,
            } => {
                url.scheme() == scheme
                    && url.host() == host
                    && url.port() == *port
                    && path_prefix.as_deref().is_none_or(|prefix| {
                        let path = url.path();
                        path == prefix
                            || path
                                .strip_prefix(prefix)
                                .is_some_and(|rest| rest.starts_with('/'))
                    })
            }
        }
    }
}

/// One caller's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// A name for logs, audit and CheckAccess.
    pub name: String,
    /// The identities (token identities, JWT subjects, SPIFFE ids) this rule is for.
    pub identities: BTreeSet<String>,
    /// Allowed RPCs; `None` allows all.
    pub rpcs: Option<BTreeSet<Rpc>>,
    /// Allowed intents; `None` allows all.
    pub intents: Option<BTreeSet<Intent>>,
    /// Allowed organizations.
    pub organizations: OrganizationScope,
    /// Allowed return and success URLs; empty allows only the configured defaults.
    pub return_origins: Vec<OriginRule>,
    /// Whether calls must name an acting user (`x-acting-user`).
    pub require_acting_user: bool,
    /// The caller's own share of the WorkOS quota, requests per minute.
    pub requests_per_minute: Option<u32>,
    /// How many WatchSetup streams the caller may hold open at once.
    pub max_watchers: u32,
    /// Whom the caller may add as an IT contact or invite; nobody by default.
    pub invite_email_domains: InviteDomains,
}

/// Concurrent WatchSetup streams per caller when a rule sets no `max_watchers`.
pub const DEFAULT_MAX_WATCHERS: u32 = 100;

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The rules; an identity may appear in at most one.
    pub rules: Vec<Rule>,
}

/// What the policy knows about an organization a call is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrganizationFacts<'a> {
    /// WorkOS id, when known.
    pub id: Option<&'a str>,
    /// External id, when known.
    pub external_id: Option<&'a str>,
}

/// A would-be call.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The RPC.
    pub rpc: Rpc,
    /// The organization it is about, if any.
    pub organization: Option<OrganizationFacts<'a>>,
    /// The intent, for links.
    pub intent: Option<Intent>,
    /// Explicit return URL.
    pub return_url: Option<&'a RedirectUrl>,
    /// Explicit success URL.
    pub success_url: Option<&'a RedirectUrl>,
    /// The acting user, if named.
    pub acting_user: Option<&'a str>,
}

impl<'a> AccessRequest<'a> {
    /// A request for `rpc` with nothing else known yet.
    pub fn new(rpc: Rpc) -> Self {
        Self {
            rpc,
            organization: None,
            intent: None,
            return_url: None,
            success_url: None,
            acting_user: None,
        }
    }
}

/// Why a call was denied, as an ErrorInfo reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No rule names the identity.
    UnknownCaller,
    /// The rule does not allow the RPC.
    RpcNotAllowed,
    /// The rule requires `x-acting-user`.
    ActingUserRequired,
    /// The rule does not allow the intent.
    IntentNotAllowed,
    /// The rule does not cover the organization.
    OrganizationNotAllowed,
    /// A return or success URL is outside the rule's origins.
    ReturnUrlNotAllowed {
        /// `return_url` or `success_url`.
        field: &'static str,
    },
    /// The rule lets its caller invite nobody.
    InviteDomainsNotConfigured,
    /// The invitee's domain matches none of the rule's patterns.
    InviteeDomainNotAllowed,
    /// The invitee's domain is not a verified domain of the organization.
    InviteeDomainNotVerified,
}

impl Denial {
    /// The ErrorInfo reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownCaller => "UNKNOWN_CALLER",
            Self::RpcNotAllowed => "RPC_NOT_ALLOWED",
            Self::ActingUserRequired => "ACTING_USER_REQUIRED",
            Self::IntentNotAllowed => "INTENT_NOT_ALLOWED",
            Self::OrganizationNotAllowed => "ORGANIZATION_NOT_ALLOWED",
            Self::ReturnUrlNotAllowed { .. } => "RETURN_URL_NOT_ALLOWED",
            Self::InviteDomainsNotConfigured => "INVITE_DOMAINS_NOT_CONFIGURED",
            Self::InviteeDomainNotAllowed => "INVITEE_DOMAIN_NOT_ALLOWED",
            Self::InviteeDomainNotVerified => "INVITEE_DOMAIN_NOT_VERIFIED",
        }
    }
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule that matched the identity, if any.
    pub rule: Option<String>,
    /// `None` when allowed.
    pub denial: Option<Denial>,
    /// A sentence for people.
    pub explanation: String,
}

impl Decision {
    /// Whether the call is allowed.
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// The decision as the core's result: a denial becomes [`crate::error::Error::Denied`].
    pub fn into_result(self) -> Result<(), crate::error::Error> {
        match self.denial {
            None => Ok(()),
            Some(denial) => Err(crate::error::Error::Denied {
                reason: denial.reason(),
                explanation: self.explanation,
                field: match denial {
                    Denial::ReturnUrlNotAllowed { field } => Some(field),
                    _ => None,
                },
            }),
        }
    }
}

impl Policy {
    /// The rule for an identity.
    pub fn rule_for(&self, identity: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.identities.contains(identity))
    }

    /// Whether deciding on this identity's organization access needs the organization's
    /// external id (the rule lists external-id patterns).
    pub fn needs_external_id(&self, identity: &str) -> bool {
        matches!(
            self.rule_for(identity).map(|r| &r.organizations),
            Some(OrganizationScope::Listed { external_ids, .. }) if !external_ids.is_empty()
        )
    }

    /// Which facts could widen this identity's organization scope: (WorkOS ids are listed,
    /// external-id patterns are listed).
    pub fn scope_keys(&self, identity: &str) -> (bool, bool) {
        match self.rule_for(identity).map(|r| &r.organizations) {
            Some(OrganizationScope::Listed { ids, external_ids }) => {
                (!ids.is_empty(), !external_ids.is_empty())
            }
            _ => (false, false),
        }
    }

    /// Decides a would-be call. Checks run in a fixed order, so the first failing one is the
    /// reason: RPC, acting user, intent, URLs, organization.
    pub fn authorize(&self, identity: &str, request: &AccessRequest<'_>) -> Decision {
        let Some(rule) = self.rule_for(identity) else {
            return deny(
                None,
                Denial::UnknownCaller,
                format!("no policy rule names the identity {identity:?}"),
            );
        };
        let name = Some(rule.name.clone());
        if rule
            .rpcs
            .as_ref()
            .is_some_and(|rpcs| !rpcs.contains(&request.rpc))
        {
            return deny(
                name,
                Denial::RpcNotAllowed,
                format!("rule {:?} does not allow {}", rule.name, request.rpc),
            );
        }
        if matches!(request.rpc, Rpc::AddItContact | Rpc::InviteItContact)
            && !rule.invite_email_domains.allows_anyone()
        {
            return deny(
                name,
                Denial::InviteDomainsNotConfigured,
                format!(
                    "rule {:?} lets its caller invite nobody: it sets no invite_email_domains",
                    rule.name
                ),
            );
        }
        if rule.require_acting_user
            && request.rpc != Rpc::CheckAccess
            && request.acting_user.is_none()
        {
            return deny(
                name,
                Denial::ActingUserRequired,
                format!(
                    "rule {:?} requires the acting user in x-acting-user",
                    rule.name
                ),
            );
        }
        if let (Some(intent), Some(allowed)) = (request.intent, &rule.intents)
            && !allowed.contains(&intent)
        {
            return deny(
                name,
                Denial::IntentNotAllowed,
                format!("rule {:?} does not allow the {intent} intent", rule.name),
            );
        }
        for (field, url) in [
            ("return_url", request.return_url),
            ("success_url", request.success_url),
        ] {
            if let Some(url) = url
                && !rule.return_origins.iter().any(|origin| origin.allows(url))
            {
                return deny(
                    name,
                    Denial::ReturnUrlNotAllowed { field },
                    format!(
                        "rule {:?} does not allow {field} {}",
                        rule.name,
                        url.origin()
                    ),
                );
            }
        }
        let organization_ok = match (&rule.organizations, request.rpc, request.organization) {
            (OrganizationScope::All, _, _) => true,
            // A restricted caller may not enumerate every organization.
            (OrganizationScope::Listed { .. }, Rpc::ListOrganizations, _) => false,
            (OrganizationScope::Listed { ids, external_ids }, _, Some(facts)) => {
                facts.id.is_some_and(|id| ids.contains(id))
                    || facts
                        .external_id
                        .is_some_and(|ext| external_ids.iter().any(|p| p.matches(ext)))
            }
            // Calls about no organization (ListIntents, CheckAccess) need no scope.
            (OrganizationScope::Listed { .. }, _, None) => true,
        };
        if !organization_ok {
            let what = request
                .organization
                .and_then(|f| f.id.or(f.external_id))
                .map_or_else(
                    || "every organization".to_owned(),
                    |o| format!("organization {o}"),
                );
            return deny(
                name,
                Denial::OrganizationNotAllowed,
                format!("rule {:?} does not cover {what}", rule.name),
            );
        }
        Decision {
            rule: name,
            denial: None,
            explanation: format!("allowed by rule {:?}", rule.name),
        }
    }
}

pub(super) fn deny(rule: Option<String>, denial: Denial, explanation: String) -> Decision {
    Decision {
        rule,
        denial: Some(denial),
        explanation,
    }
}

#[cfg(test)]
mod tests;
