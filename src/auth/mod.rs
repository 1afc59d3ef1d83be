//! Who is calling ([`identity`]), what they may do ([`policy`]), and the record of it
//! ([`audit`]), joined by the [`Gatekeeper`] every handler goes through.
//!
//! Health and reflection never reach this module: they need no identity.

pub mod audit;
pub mod identity;
pub mod policy;

use std::sync::{Arc, RwLock};

use tonic::Status;

use crate::{error::Error, telemetry::Metrics};
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
    metrics: Arc<Metrics>,
}

impl Gatekeeper {
    /// Joins the parts.
    pub fn new(
        authenticator: Authenticator,
        policy: PolicyStore,
        auditor: Auditor,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            authenticator: Arc::new(authenticator),
            policy,
            auditor: Arc::new(auditor),
            metrics,
        }
    }

    /// The metrics every call reports to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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

    /// Converts the call's result to its gRPC answer, counts it, logs one line for it, and
    /// writes the audit record when one is due.
    pub fn conclude<T>(
        &self,
        entry: AuditEntry,
        context: &RequestContext,
        result: Result<T, Error>,
    ) -> Result<T, Status> {
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
        let latency = entry.elapsed();
        let method = entry.rpc().name();
        // Caller labels stay a bounded set: the identities the policy names.
        let caller = match entry.caller_identity() {
            None => "unauthenticated",
            Some(identity) if self.policy.current().rule_for(identity).is_some() => identity,
            Some(_) => "unknown",
        };
        let code_name = audit::code_name(code);
        self.metrics.rpc(method, caller, code_name, latency);
        let workos_request_id = context.trace.workos_request_id();
        tracing::info!(
            target: "portal_gateway::rpc",
            method,
            caller = entry.caller_identity().unwrap_or(""),
            code = code_name,
            reason = reason.as_deref().unwrap_or(""),
            latency_ms = latency.as_secs_f64() * 1000.0,
            request_id = %context.trace.request_id,
            workos_request_id = workos_request_id.as_deref().unwrap_or(""),
            "rpc"
        );
        if let Some(record) = entry.finish(code, reason) {
            self.auditor.write(&record);
        }
        result
    }
}
