//! What every RPC shares, written once: shed load beyond the in-flight limit, read the request
//! id and trace context, bound the call by its deadline (answering DEADLINE_EXCEEDED and
//! dropping the upstream request when it passes), prove the caller, run the handler, then turn
//! the result into a status, count it, log one line for it, and write its audit record before
//! the answer goes.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Semaphore, time::Instant};
use tonic::{Request, Response, Status};

use super::status;
use crate::{
    auth::{
        audit::{AuditEntry, Auditor, Ticket},
        identity::{Authenticator, RequestContext},
        policy::Rpc,
    },
    error::{Error, Invalid},
    gateway::{Call, CallSetup, Gateway},
    telemetry::Metrics,
};

/// How much earlier than the caller's deadline the gateway gives up, so its DEADLINE_EXCEEDED
/// reaches the caller before the caller's own timer (and before tonic's, which would answer
/// CANCELLED) fires.
const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

/// The shared envelope of every RPC. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Envelope {
    gateway: Gateway,
    authenticator: Arc<Authenticator>,
    auditor: Arc<Auditor>,
    /// Whether the audit sink refused the last write (watched for health).
    audit_failing: Arc<tokio::sync::watch::Sender<bool>>,
    metrics: Arc<Metrics>,
    default_deadline: Duration,
    in_flight: Arc<Semaphore>,
}

impl Envelope {
    /// Joins the core to what the envelope needs. Calls without a `grpc-timeout` get
    /// `default_deadline`; beyond `max_in_flight` concurrent calls, new ones are refused at once.
    pub fn new(
        gateway: Gateway,
        authenticator: Authenticator,
        auditor: Auditor,
        metrics: Arc<Metrics>,
        default_deadline: Duration,
        max_in_flight: usize,
    ) -> Self {
        Self {
            gateway,
            authenticator: Arc::new(authenticator),
            auditor: Arc::new(auditor),
            audit_failing: Arc::new(tokio::sync::watch::channel(false).0),
            metrics,
            default_deadline,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    /// Watches whether the audit sink is refusing writes, for health reporting.
    pub fn audit_failing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.audit_failing.subscribe()
    }

    /// Writes the summary of the unauthenticated calls counted since the last one.
    pub fn write_unauthenticated_summary(&self) {
        let written = self.auditor.write_unauthenticated_summary();
        if !written {
            self.note_audit(false);
        }
    }

    /// Checks whether the audit sink takes writes again (by writing a check record), and notes
    /// the answer for health. For the health loop while the sink is failing.
    pub fn check_audit_sink(&self) -> bool {
        let written = self.auditor.check_sink();
        self.note_audit(written);
        written
    }

    fn note_audit(&self, written: bool) {
        if !written {
            self.metrics.audit_failure();
        }
        let changed = self.audit_failing.send_if_modified(|failing| {
            let changed = *failing == written;
            *failing = !written;
            changed
        });
        if changed {
            self.metrics.audit_sink_failing(!written);
        }
    }

    /// Serves one RPC: `handler` converts the request, calls the core once and converts back.
    pub(super) async fn serve<Req, Resp>(
        &self,
        rpc: Rpc,
        request: Request<Req>,
        handler: impl AsyncFnOnce(&Gateway, &mut Call, Req) -> Result<Resp, Error>,
    ) -> Result<Response<Resp>, Status> {
        let context = RequestContext::from_request(&request);
        let facts = AuditEntry::new(rpc, &context.request_id, context.peer);
        let deadline = self.deadline(&request);
        let work = self.run(&context, deadline, facts, request.into_inner(), handler);
        #[cfg(feature = "otlp")]
        let work = tracing::Instrument::instrument(
            work,
            crate::telemetry::otlp::rpc_span(rpc.name(), context.traceparent.as_deref()),
        );
        let (result, facts, workos_request_id) = work.await;
        let mut answer = self
            .conclude(facts, &context, workos_request_id.as_deref(), result)
            .await
            .map(Response::new);
        let metadata = match &mut answer {
            Ok(response) => response.metadata_mut(),
            Err(status) => status.metadata_mut(),
        };
        // The call's request id and WorkOS's, so a caller can quote both to support.
        if let Ok(value) = context.request_id.parse() {
            metadata.insert("x-request-id", value);
        }
        if let Some(value) = workos_request_id.and_then(|id| id.parse().ok()) {
            metadata.insert("x-workos-request-id", value);
        }
        answer
    }

    async fn run<Req, Resp>(
        &self,
        context: &RequestContext,
        deadline: Instant,
        facts: AuditEntry,
        body: Req,
        handler: impl AsyncFnOnce(&Gateway, &mut Call, Req) -> Result<Resp, Error>,
    ) -> (Result<Resp, Error>, AuditEntry, Option<String>) {
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return (Err(Error::Overloaded), facts, None);
        };
        let _in_flight = self.metrics.in_flight();
        let caller =
            match tokio::time::timeout_at(deadline, self.authenticator.authenticate(context)).await
            {
                Ok(Ok(caller)) => caller,
                Ok(Err(error)) => return (Err(error.into()), facts, None),
                Err(_) => return (Err(Error::DeadlineExceeded), facts, None),
            };
        let acting_user = match context.acting_user() {
            Ok(user) => user.map(str::to_owned),
            Err(problem) => {
                let mut facts = facts;
                facts.caller(&caller);
                return (
                    Err(Invalid::field("x-acting-user", problem).into()),
                    facts,
                    None,
                );
            }
        };
        let setup = CallSetup {
            deadline,
            request_id: context.request_id.clone(),
            traceparent: crate::telemetry::upstream_traceparent(context.traceparent.as_deref()),
            acting_user,
        };
        let mut call = self.gateway.begin(caller, setup, facts);
        let guard = CancelGuard {
            call: &mut call,
            auditor: &self.auditor,
            armed: true,
        };
        let result =
            tokio::time::timeout_at(deadline, handler(&self.gateway, &mut *guard.call, body))
                .await
                .unwrap_or(Err(Error::DeadlineExceeded));
        guard.disarm();
        let (facts, workos_request_id) = call.finish();
        (result, facts, workos_request_id)
    }

    /// When this call must be answered: the caller's `grpc-timeout` (a little early), at most the
    /// configured default.
    fn deadline<T>(&self, request: &Request<T>) -> Instant {
        let now = Instant::now();
        let asked = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| timeout.saturating_sub(DEADLINE_MARGIN));
        now + asked.map_or(self.default_deadline, |t| t.min(self.default_deadline))
    }

    /// Converts the call's result to its gRPC answer, counts it, logs one line for it, and
    /// writes the audit record when one is due.
    async fn conclude<T>(
        &self,
        facts: AuditEntry,
        context: &RequestContext,
        workos_request_id: Option<&str>,
        result: Result<T, Error>,
    ) -> Result<T, Status> {
        let reason = result.as_ref().err().map(Error::reason);
        let denied = result.as_ref().err().is_some_and(Error::is_denial);
        let result = result.map_err(status::from_error);
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        let latency = facts.elapsed();
        let method = facts.rpc().name();
        let code_name = crate::auth::audit::code_name(code);
        // Calls without credentials are summed up, not recorded (or logged) one by one: anyone
        // can make them, as fast as they like.
        let unauthenticated = match (&result, reason) {
            (Err(status), Some(reason)) if status.code() == tonic::Code::Unauthenticated => {
                Some(reason)
            }
            _ => None,
        };
        let first_of_its_kind = unauthenticated
            .is_some_and(|reason| self.auditor.count_unauthenticated(context.peer, reason));
        if unauthenticated.is_none() || first_of_its_kind {
            tracing::info!(
            target: crate::telemetry::RPC_LOG_TARGET,
            method,
            caller = facts.caller_identity().unwrap_or(""),
            code = code_name,
            reason = reason.unwrap_or(""),
            latency_ms = latency.as_secs_f64() * 1000.0,
            request_id = %context.request_id,
            workos_request_id = workos_request_id.unwrap_or(""),
            "rpc"
            );
        }
        // Caller labels stay a bounded set: the identities the policy names.
        let caller = match facts.caller_identity() {
            None => "unauthenticated".to_owned(),
            Some(identity) if self.gateway.knows(identity) => identity.to_owned(),
            Some(_) => "unknown".to_owned(),
        };
        let audit = facts
            .finish(code, reason.map(str::to_owned), denied)
            .filter(|_| unauthenticated.is_none())
            .and_then(|record| self.auditor.append(&record));
        let audit_due = audit.is_some();
        let mut written = true;
        if audit_due || crate::telemetry::rpc_lines_pending() {
            // Let the other calls ending in this round add their lines, then write them all
            // with one call per sink; the audit record is written before the answer is sent.
            let group = GroupWrite {
                auditor: &self.auditor,
                audit,
                done: false,
            };
            crate::lines::requeue().await;
            written = group.finish();
        }
        let result = if audit_due {
            self.note_audit(written);
            match result {
                // Fail closed: no link or change leaves without its record. (A refusal still
                // goes out: it gives nothing away.)
                Ok(_) if !written => {
                    tracing::error!(method, request_id = %context.request_id, "the call's audit record could not be written: its result is withheld (AUDIT_UNAVAILABLE)");
                    Err(status::from_error(Error::AuditUnavailable))
                }
                other => other,
            }
        } else {
            result
        };
        let final_code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics.rpc(
            method,
            &caller,
            crate::auth::audit::code_name(final_code),
            latency,
        );
        result
    }
}

/// Writes the record of a minting or mutating call whose caller went away (the RPC's future was
/// dropped) while the core worked on it: what it did upstream may have happened all the same.
struct CancelGuard<'a> {
    call: &'a mut Call,
    auditor: &'a Auditor,
    armed: bool,
}

impl CancelGuard<'_> {
    /// The call ended normally: its record is written by `conclude`.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let facts = self.call.facts().clone();
        let record = facts.finish(tonic::Code::Cancelled, Some("CANCELLED".into()), false);
        if let Some(ticket) = record.and_then(|record| self.auditor.append(&record)) {
            self.auditor.write_through(ticket);
        }
    }
}

/// Writes a call's pending lines (its audit record, and the per-RPC log lines) when dropped:
/// after the yield that lets other calls join the group, or when the call is cancelled while it
/// waits there, so a cancelled call's record is written all the same.
struct GroupWrite<'a> {
    auditor: &'a Auditor,
    audit: Option<Ticket>,
    done: bool,
}

impl GroupWrite<'_> {
    /// Writes the group now; whether the call's audit record (if it has one) was written.
    fn finish(mut self) -> bool {
        self.done = true;
        let written = self
            .audit
            .take()
            .is_none_or(|ticket| self.auditor.write_through(ticket));
        crate::telemetry::write_rpc_lines();
        written
    }
}

impl Drop for GroupWrite<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(ticket) = self.audit.take() {
            self.auditor.write_through(ticket);
        }
        crate::telemetry::write_rpc_lines();
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use tokio_test::{assert_pending, task};

    use super::*;
    use crate::auth::{PolicyStore, audit::AuditTarget};

    #[test]
    fn grpc_timeouts_are_read_with_their_units() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789S", "10x", "-5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// An envelope over a gateway whose WorkOS is never reached, writing audit records to
    /// `auditor`.
    fn envelope_writing_to(auditor: Auditor) -> Envelope {
        let config = crate::Config::development(
            "127.0.0.1:0".parse().expect("address"),
            url::Url::parse("http://127.0.0.1:9").expect("url"),
            secrecy::SecretString::from("sk_test_unused"),
        );
        let metrics = Arc::new(Metrics::default());
        let gateway = Gateway::connect(
            &config.workos,
            metrics.clone(),
            Default::default(),
            PolicyStore::default(),
        )
        .expect("client");
        Envelope::new(
            gateway,
            Authenticator::default(),
            auditor,
            metrics,
            Duration::from_secs(1),
            8,
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_cancelled_while_its_record_waits_for_its_group_still_has_it_written() {
        let path = std::env::temp_dir().join(format!(
            "portal-gateway-audit-cancelled-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let auditor = Auditor::open(&AuditTarget::File(path.clone())).expect("audit file");
        let envelope = envelope_writing_to(auditor);
        let context = RequestContext::from_request(&Request::new(()));
        let facts = AuditEntry::new(Rpc::GenerateLink, "cancelled-call", None);
        // The first poll queues the record and yields so that other calls can join its group;
        // the caller goes away right then.
        let mut call = task::spawn(envelope.conclude(facts, &context, None, Ok::<(), Error>(())));
        assert_pending!(call.poll());
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

    /// A sink that refuses writes while `broken` is set, as a full disk does.
    #[derive(Clone)]
    struct Flaky(Arc<std::sync::atomic::AtomicBool>);

    impl std::io::Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.load(std::sync::atomic::Ordering::SeqCst) {
                Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
            } else {
                Ok(buf.len())
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_result_whose_record_cannot_be_written_is_withheld_until_the_sink_heals() {
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let envelope = envelope_writing_to(Auditor::to_writer(Flaky(broken.clone())));
        let failing = envelope.audit_failing();
        let context = RequestContext::from_request(&Request::new(()));
        let facts = AuditEntry::new(Rpc::GenerateLink, "withheld", None);
        let answer = envelope
            .conclude(facts, &context, None, Ok::<&str, Error>("a link"))
            .await;
        let status = answer.expect_err("withheld");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(*failing.borrow(), "health hears of it");
        assert!(!envelope.check_audit_sink(), "still broken");
        broken.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(envelope.check_audit_sink(), "the check record goes through");
        assert!(!*failing.borrow(), "healed");
        let facts = AuditEntry::new(Rpc::GenerateLink, "delivered", None);
        let answer = envelope
            .conclude(facts, &context, None, Ok::<&str, Error>("a link"))
            .await;
        assert_eq!(answer.expect("delivered"), "a link");
    }
}
