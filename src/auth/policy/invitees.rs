//! Whom a rule lets its caller invite: the invitee's e-mail domain against the rule's
//! `invite_email_domains`. Pure, like the rest of the policy: the organization's verified domains
//! are handed in once the caller has read them.

use super::{Decision, Denial, Policy, deny};

/// Whom a rule lets its caller invite, by the invitee's e-mail domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteDomains {
    /// `"organization"`: one of the organization's verified domains, read at invite time.
    pub organization: bool,
    /// Explicit domains and `*.` subdomain patterns.
    pub patterns: Vec<crate::domain::invitation::DomainPattern>,
    /// `"*"`: any domain (development only).
    pub any: bool,
}

impl InviteDomains {
    /// Whether the rule lets its caller invite anyone at all.
    pub fn allows_anyone(&self) -> bool {
        self.organization || self.any || !self.patterns.is_empty()
    }
}

/// The policy's answer on an invitee's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteeVerdict {
    /// Allowed.
    Allowed,
    /// Allowed only if the domain is one of the organization's verified domains, which the
    /// caller must read and ask again with.
    NeedsOrganizationDomains,
    /// Refused.
    Denied(Decision),
}

impl Policy {
    /// Decides whether `identity` may invite (or add as a contact) an address at `domain`, a
    /// canonical domain. `verified` is the organization's verified domains once read: the
    /// patterns are decided first, so the organization is read only when they do not decide.
    /// Refusals never name the organization's domains.
    pub fn authorize_invitee(
        &self,
        identity: &str,
        domain: &str,
        verified: Option<&[String]>,
    ) -> InviteeVerdict {
        let Some(rule) = self.rule_for(identity) else {
            return InviteeVerdict::Denied(deny(
                None,
                Denial::UnknownCaller,
                format!("no policy rule names the identity {identity:?}"),
            ));
        };
        let allowed = &rule.invite_email_domains;
        if allowed.any || allowed.patterns.iter().any(|p| p.matches(domain)) {
            return InviteeVerdict::Allowed;
        }
        let name = Some(rule.name.clone());
        if !allowed.allows_anyone() {
            return InviteeVerdict::Denied(deny(
                name,
                Denial::InviteDomainsNotConfigured,
                format!(
                    "rule {:?} lets its caller invite nobody: it sets no invite_email_domains",
                    rule.name
                ),
            ));
        }
        if !allowed.organization {
            return InviteeVerdict::Denied(deny(
                name,
                Denial::InviteeDomainNotAllowed,
                format!(
                    "rule {:?} does not allow inviting addresses at {domain}",
                    rule.name
                ),
            ));
        }
        match verified {
            None => InviteeVerdict::NeedsOrganizationDomains,
            Some(verified) if verified.iter().any(|v| v == domain) => InviteeVerdict::Allowed,
            Some(_) => InviteeVerdict::Denied(deny(
                name,
                Denial::InviteeDomainNotVerified,
                format!(
                    "rule {:?} allows inviting only addresses at the organization's verified domains, and {domain} is not one",
                    rule.name
                ),
            )),
        }
    }
}
