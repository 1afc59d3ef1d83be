//! The audit trail: one JSON line per minting or mutating RPC (allowed or not) and per denial of
//! any RPC, written to its own sink (stdout by default, or an append-only file).
//!
//! A record says who (identity and how it was proven), on whose behalf (acting user), what (RPC,
//! organization, intent, URL origins), the outcome and the request id. It never holds a link, a
//! token or the key: a minted link appears only as a fingerprint (a SHA-256 prefix), enough to
//! match a leaked link to its record.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{identity::Caller, policy::Rpc};
use crate::lines::LineSink;
pub use crate::lines::Ticket;

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditTarget {
    /// Standard output, one JSON object per line.
    #[default]
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

/// Writes audit records, one JSON line each. A record is written before the call's answer is
/// sent, so a crash can lose an answer, never the record of a link that was minted. Records of
/// calls ending together are written together (see [`LineSink`]), in the order they ended.
#[derive(Debug)]
pub struct Auditor {
    sink: LineSink,
    /// Unauthenticated calls since the last summary, by peer address and reason: recorded as
    /// counts, so that no one without credentials can fill the disk with records.
    unauthenticated:
        std::sync::Mutex<std::collections::HashMap<(Option<std::net::IpAddr>, &'static str), u64>>,
}

impl Auditor {
    /// Opens the target (creating a file if needed, appending to it).
    pub fn open(target: &AuditTarget) -> std::io::Result<Self> {
        let sink = match target {
            AuditTarget::Stdout => LineSink::new(std::io::stdout()),
            AuditTarget::File(path) => LineSink::new(open_append(path)?),
        };
        Ok(Self {
            sink,
            unauthenticated: Default::default(),
        })
    }

    /// Counts an unauthenticated call for the next summary. Returns whether it is the first of
    /// its peer and reason since the last one (so a caller can log just that one).
    pub fn count_unauthenticated(
        &self,
        peer: Option<std::net::SocketAddr>,
        reason: &'static str,
    ) -> bool {
        let mut counts = self
            .unauthenticated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Beyond this many distinct peers, the rest are counted together.
        const PEERS_MAX: usize = 1024;
        let peer = peer.map(|p| p.ip());
        let key = if counts.len() >= PEERS_MAX && !counts.contains_key(&(peer, reason)) {
            (None, reason)
        } else {
            (peer, reason)
        };
        let count = counts.entry(key).or_default();
        *count += 1;
        *count == 1
    }

    /// Writes one summary record per peer and reason for the unauthenticated calls counted since
    /// the last summary. Returns whether every record was written (true when there were none).
    pub fn write_unauthenticated_summary(&self) -> bool {
        let counts = std::mem::take(
            &mut *self
                .unauthenticated
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut last = None;
        for ((peer, reason), count) in counts {
            let record = AuditRecord {
                time: time.clone(),
                rpc: "UnauthenticatedCalls",
                outcome: "UNAUTHENTICATED",
                reason: Some(reason.to_owned()),
                peer: peer.map(|ip| ip.to_string()),
                count: Some(count),
                request_id: String::new(),
                ..AuditRecord::default()
            };
            last = self.append(&record).or(last);
        }
        last.is_none_or(|ticket| self.write_through(ticket))
    }

    /// Writes records to `writer` (for tests that need a sink that fails on demand).
    #[cfg(test)]
    pub(crate) fn to_writer(writer: impl std::io::Write + Send + 'static) -> Self {
        Self {
            sink: LineSink::new(writer),
            unauthenticated: Default::default(),
        }
    }

    /// Queues one record for the next group; [`Auditor::write_through`] writes it.
    pub fn append(&self, record: &AuditRecord) -> Option<Ticket> {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(error = %error, "cannot encode an audit record");
                return None;
            }
        };
        line.push(b'\n');
        Some(self.sink.append(&line))
    }

    /// Returns once the record of `ticket` is written, saying whether it was. A failed write
    /// is logged; the caller decides what the call answers (it fails closed).
    pub fn write_through(&self, ticket: Ticket) -> bool {
        match self.sink.write_through(ticket) {
            Ok(()) => true,
            Err(lost) => {
                tracing::error!(error = %lost.error, records = lost.lines, "cannot write audit records");
                false
            }
        }
    }

    /// Writes a record that the audit sink is being checked, for the health loop while writes
    /// fail: it fails as long as the sink does, and once it is written the sink works again.
    pub fn check_sink(&self) -> bool {
        let record = AuditRecord {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            rpc: "AuditSinkCheck",
            outcome: "OK",
            request_id: crate::domain::random_uuid(),
            ..AuditRecord::default()
        };
        self.append(&record)
            .is_some_and(|ticket| self.write_through(ticket))
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// One audit record, as written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 time, UTC, milliseconds.
    pub time: String,
    /// The RPC method name.
    pub rpc: &'static str,
    /// gRPC outcome, such as `OK` or `PERMISSION_DENIED`.
    pub outcome: &'static str,
    /// ErrorInfo reason of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The caller's identity, when proven.
    pub caller: Option<String>,
    /// How it was proven.
    pub proof: Option<&'static str>,
    /// The acting user (`x-acting-user`).
    pub acting_user: Option<String>,
    /// WorkOS organization id.
    pub organization_id: Option<String>,
    /// External id.
    pub external_id: Option<String>,
    /// Intent of a link.
    pub intent: Option<&'static str>,
    /// The `external_user_id` a link was minted for (the acting user unless the request named
    /// another), which RevokeLinks cuts off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    /// Origin of the return URL.
    pub return_origin: Option<String>,
    /// Origin of the success URL.
    pub success_origin: Option<String>,
    /// Request id (`x-request-id`, or generated).
    pub request_id: String,
    /// TCP peer.
    pub peer: Option<String>,
    /// `sha256:` + the first 16 hex digits of the minted link's SHA-256.
    pub link_fingerprint: Option<String>,
    /// The invitee's e-mail domain (IT contacts and invitations), never the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitee_domain: Option<String>,
    /// `sha256:` + 16 hex digits of the invitee's lower-cased address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitee_fingerprint: Option<String>,
    /// An invitation's intents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation_intents: Option<Vec<&'static str>>,
    /// Whether an active invitation was revoked to send this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_active: Option<bool>,
    /// For a summary record: how many calls it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// An audit record being filled in while a call runs.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    record: AuditRecord,
    rpc: Rpc,
    started: tokio::time::Instant,
}

impl AuditEntry {
    /// Starts a record for `rpc`.
    pub fn new(rpc: Rpc, request_id: &str, peer: Option<std::net::SocketAddr>) -> Self {
        Self {
            record: AuditRecord {
                rpc: rpc.name(),
                request_id: request_id.to_owned(),
                peer: peer.map(|p| p.to_string()),
                ..AuditRecord::default()
            },
            rpc,
            started: tokio::time::Instant::now(),
        }
    }

    /// The RPC.
    pub fn rpc(&self) -> Rpc {
        self.rpc
    }

    /// The proven caller's identity, if any yet.
    pub fn caller_identity(&self) -> Option<&str> {
        self.record.caller.as_deref()
    }

    /// How long since the call began.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The proven caller.
    pub fn caller(&mut self, caller: &Caller) {
        self.record.caller = Some(caller.identity.clone());
        self.record.proof = Some(caller.proof.as_str());
    }

    /// The acting user.
    pub fn acting_user(&mut self, user: Option<&str>) {
        self.record.acting_user = user.map(str::to_owned);
    }

    /// The organization, as far as it is known.
    pub fn organization(&mut self, id: Option<&str>, external_id: Option<&str>) {
        if let Some(id) = id {
            self.record.organization_id = Some(id.to_owned());
        }
        if let Some(external_id) = external_id {
            self.record.external_id = Some(external_id.to_owned());
        }
    }

    /// The link's intent, URL origins and the external user it is minted for.
    pub fn link_request(
        &mut self,
        intent: &'static str,
        return_origin: Option<String>,
        success_origin: Option<String>,
        external_user_id: Option<&str>,
    ) {
        self.record.intent = Some(intent);
        self.record.external_user_id = external_user_id.map(str::to_owned);
        self.record.return_origin = return_origin;
        self.record.success_origin = success_origin;
    }

    /// The invitee, as its domain and a fingerprint of the address.
    pub fn invitee(&mut self, domain: Option<String>, fingerprint: String) {
        self.record.invitee_domain = domain;
        self.record.invitee_fingerprint = Some(fingerprint);
    }

    /// An invitation's intents, and whether it replaced an active one.
    pub fn invitation(&mut self, intents: Vec<&'static str>, replaced_active: Option<bool>) {
        self.record.invitation_intents = Some(intents);
        self.record.replaced_active = replaced_active;
    }

    /// The minted link, kept only as a fingerprint.
    pub fn link(&mut self, link: &str) {
        self.record.link_fingerprint = Some(fingerprint(link));
    }

    /// Finishes the record with the call's outcome. Returns it when it must be written: every
    /// minting or mutating call, and every denial (`denied`: the caller was not proven, or the
    /// policy refused the call).
    pub fn finish(
        mut self,
        outcome: tonic::Code,
        reason: Option<String>,
        denied: bool,
    ) -> Option<AuditRecord> {
        if !self.rpc.is_mutating() && !denied {
            return None;
        }
        self.record.time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        self.record.outcome = code_name(outcome);
        self.record.reason = reason;
        Some(self.record)
    }
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `link`.
pub fn fingerprint(link: &str) -> String {
    let digest = Sha256::digest(link.as_bytes());
    format!("sha256:{}", crate::domain::hex(&digest[..8]))
}

/// The canonical upper-case name of a gRPC code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}
