//! The policy dry run: what the policy would decide about a would-be call.

use crate::{
    auth::policy::{AccessRequest, Rpc},
    domain::{Intent, OrganizationRef, RedirectUrl},
    error::Error,
};

use super::{Call, Gateway};

/// A would-be call to decide on, parsed.
#[derive(Debug)]
pub struct AccessCheck {
    /// The RPC.
    pub rpc: Rpc,
    /// The organization it would be about.
    pub organization: Option<OrganizationRef>,
    /// The intent, for links.
    pub intent: Option<Intent>,
    /// Explicit return URL.
    pub return_url: Option<RedirectUrl>,
    /// Explicit success URL.
    pub success_url: Option<RedirectUrl>,
    /// The acting user it would send.
    pub acting_user: Option<String>,
    /// Whose access to check; the caller's own when unset.
    pub identity: Option<String>,
}

/// The policy's answer to a dry run.
#[derive(Debug)]
pub struct AccessAnswer {
    /// Whether the call would be allowed.
    pub allowed: bool,
    /// The identity decided on.
    pub identity: String,
    /// The rule that names it, if any.
    pub rule: String,
    /// `ALLOWED`, or the denial's reason.
    pub reason: String,
    /// A sentence for people.
    pub explanation: String,
}

impl Gateway {
    /// Decides `check` exactly as the real call would be decided, and reports the decision
    /// instead of enforcing it. Anyone may ask about themselves; asking about another identity
    /// is a right of its own (`CheckAccess` in the policy).
    pub async fn check_access(
        &self,
        call: &mut Call,
        check: AccessCheck,
    ) -> Result<AccessAnswer, Error> {
        let identity = match check.identity {
            Some(other) if other != call.caller.identity => {
                self.authorize(call, &AccessRequest::new(Rpc::CheckAccess))?;
                other
            }
            _ => call.caller.identity.clone(),
        };
        let base = AccessRequest {
            intent: check.intent,
            return_url: check.return_url.as_ref(),
            success_url: check.success_url.as_ref(),
            acting_user: check.acting_user.as_deref(),
            ..AccessRequest::new(check.rpc)
        };
        let outcome = match &check.organization {
            Some(organization) => self
                .authorize_organization(
                    &call.policy,
                    &mut call.upstream,
                    &identity,
                    base,
                    organization,
                )
                .await
                .map(drop),
            None => call.policy.authorize(&identity, &base).into_result(),
        };
        let rule = call
            .policy
            .rule_for(&identity)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let (allowed, reason, explanation) = match outcome {
            Ok(()) => (
                true,
                "ALLOWED".to_owned(),
                format!("allowed by rule {rule:?}"),
            ),
            Err(Error::Denied {
                reason,
                explanation,
                ..
            }) => (false, reason.to_owned(), explanation),
            Err(other) => return Err(other),
        };
        Ok(AccessAnswer {
            allowed,
            identity,
            rule,
            reason,
            explanation,
        })
    }
}
