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
    pub async fn conclude<T>(
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
            target: crate::telemetry::RPC_LOG_TARGET,
            method,
            caller = entry.caller_identity().unwrap_or(""),
            code = code_name,
            reason = reason.as_deref().unwrap_or(""),
            latency_ms = latency.as_secs_f64() * 1000.0,
            request_id = %context.trace.request_id,
            workos_request_id = workos_request_id.as_deref().unwrap_or(""),
            "rpc"
        );
        let audit = entry
            .finish(code, reason)
            .and_then(|record| self.auditor.append(&record));
        if audit.is_some() || crate::telemetry::rpc_lines_pending() {
            // Let the other calls ending in this round add their lines, then write them all
            // with one call per sink; the audit record is written before the answer is sent.
            let group = GroupWrite {
                auditor: &self.auditor,
                audit,
            };
            crate::lines::requeue().await;
            drop(group);
        }
        result
    }
}

/// Writes a call's pending lines (its audit record, and the per-RPC log lines) when dropped:
/// after the yield that lets other calls join the group, or when the call is cancelled while it
/// waits there, so a cancelled call's record is written all the same.
struct GroupWrite<'a> {
    auditor: &'a Auditor,
    audit: Option<audit::Ticket>,
}

impl Drop for GroupWrite<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.audit.take() {
            self.auditor.write_through(ticket);
        }
        crate::telemetry::write_rpc_lines();
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future as _, task::Context};

    use super::*;
    use crate::auth::{audit::AuditTarget, policy::Rpc};

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_cancelled_while_its_record_waits_for_its_group_still_has_it_written() {
        let path = std::env::temp_dir().join(format!(
            "portal-gateway-audit-cancelled-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let auditor = Auditor::open(&AuditTarget::File(path.clone())).expect("audit file");
        let gate = Gatekeeper::new(
            Authenticator::default(),
            PolicyStore::default(),
            auditor,
            Arc::new(Metrics::default()),
        );
        let context = RequestContext::from_request(&tonic::Request::new(()));
        let entry = AuditEntry::new(Rpc::GenerateLink, "cancelled-call", None);
        let mut call = Box::pin(gate.conclude(entry, &context, Ok::<(), Error>(())));
        // The first poll queues the record and yields so that other calls can join its group;
        // the caller goes away right then.
        let polled = call
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()));
        assert!(polled.is_pending());
        assert_eq!(std::fs::read_to_string(&path).expect("audit file"), "");
        drop(call);
        let written = std::fs::read_to_string(&path).expect("audit file");
        let _ = std::fs::remove_file(&path);
        let records: Vec<serde_json::Value> = written
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .collect();
        assert_eq!(records.len(), 1, "{written}");
        assert_eq!(records[0]["rpc"], "GenerateLink");
        assert_eq!(records[0]["request_id"], "cancelled-call");
        assert_eq!(records[0]["outcome"], "OK");
    }
}
