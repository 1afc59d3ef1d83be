//! Who is calling ([`identity`]), what they may do ([`policy`]), and the record of it
//! ([`audit`]), joined by the [`Gatekeeper`] every handler goes through.
//!
//! Health and reflection never reach this module: they need no identity.

pub mod audit;
pub mod identity;
pub mod policy;

use std::sync::{Arc, RwLock};

use tonic::Status;

use crate::error::Error;
use audit::{AuditEntry, Auditor};
use identity::{Authenticator, Caller, RequestContext};
use policy::{AccessRequest, Decision, Policy};

/// The policy in force, swappable at run time (reload) without blocking calls for long.
#[derive(Debug, Clone, Default)]
pub struct PolicyStore(Arc<RwLock<Arc<Policy>>>);

impl PolicyStore {
    /// A store holding `policy`.
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new policy in force.
    pub fn replace(&self, policy: Policy) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
    }
}

/// Authentication, authorization and audit for the gRPC handlers. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Gatekeeper {
    authenticator: Arc<Authenticator>,
    policy: PolicyStore,
    auditor: Arc<Auditor>,
}

impl Gatekeeper {
    /// Joins the three parts.
    pub fn new(authenticator: Authenticator, policy: PolicyStore, auditor: Auditor) -> Self {
        Self {
            authenticator: Arc::new(authenticator),
            policy,
            auditor: Arc::new(auditor),
        }
    }

    /// The policy store (for reloads).
    pub fn policy_store(&self) -> &PolicyStore {
        &self.policy
    }

    /// Proves the caller and notes it (and the acting user) in the audit entry.
    pub async fn authenticate(
        &self,
        context: &RequestContext,
        entry: &mut AuditEntry,
    ) -> Result<Caller, Error> {
        let caller = self
            .authenticator
            .authenticate(context)
            .await
            .map_err(Error::Unauthenticated)?;
        entry.caller(&caller);
        let acting_user = context.acting_user().map_err(|problem| {
            let mut invalid = crate::error::Invalid::default();
            invalid.add("x-acting-user", problem);
            Error::Invalid(invalid)
        })?;
        entry.acting_user(acting_user);
        Ok(caller)
    }

    /// The policy's decision for a would-be call (a pure function of its inputs).
    pub fn decide(&self, identity: &str, request: &AccessRequest<'_>) -> Decision {
        self.policy.current().authorize(identity, request)
    }

    /// Which organization facts the identity's rule can match on: (ids, external-id patterns).
    pub fn scope_keys(&self, identity: &str) -> (bool, bool) {
        self.policy.current().scope_keys(identity)
    }

    /// Authorizes or returns the denial as an error.
    pub fn authorize(&self, caller: &Caller, request: &AccessRequest<'_>) -> Result<(), Error> {
        let decision = self.decide(&caller.identity, request);
        match decision.denial {
            None => Ok(()),
            Some(denial) => Err(Error::Denied {
                denial,
                explanation: decision.explanation,
            }),
        }
    }

    /// Converts the call's result to its gRPC answer and writes the audit record when one is due.
    pub fn conclude<T>(&self, entry: AuditEntry, result: Result<T, Error>) -> Result<T, Status> {
        let result = result.map_err(Status::from);
        let (code, reason) = match &result {
            Ok(_) => (tonic::Code::Ok, None),
            Err(status) => {
                use tonic_types::StatusExt;
                (
                    status.code(),
                    status
                        .get_error_details()
                        .error_info()
                        .map(|info| info.reason.clone()),
                )
            }
        };
        if let Some(record) = entry.finish(code, reason) {
            self.auditor.write(&record);
        }
        result
    }
}
