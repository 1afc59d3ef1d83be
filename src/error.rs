//! The core's one error type. Every failure carries its `ErrorInfo` reason as data
//! ([`Error::reason`]), so nothing ever has to parse it back out of a gRPC status.
//!
//! This module imports nothing above it: `auth`, `workos` and the adapters each convert their
//! own errors into [`Error`], and `grpc::status` is the one place an [`Error`] becomes a
//! `tonic::Status`. Messages meant for callers never carry upstream bodies, URLs, keys or links;
//! what only an operator may see travels separately, in [`UpstreamLog`].

use std::time::Duration;

/// The `ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "adminportal.v1";

/// One invalid field, named by its proto path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Proto field path, such as `organization.metadata`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// The most field violations an answer lists; the rest are counted in one more.
pub const MAX_VIOLATIONS: usize = 20;
/// The longest field path or description kept (in characters), so that no answer's trailers grow
/// with the input.
const MAX_VIOLATION_TEXT: usize = 200;

/// A request with one or more invalid fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
pub struct Invalid {
    /// The problems found, at most [`MAX_VIOLATIONS`] of them, then one that counts the rest.
    pub violations: Vec<FieldViolation>,
    /// Problems found beyond [`MAX_VIOLATIONS`].
    more: usize,
}

/// `text`, cut to [`MAX_VIOLATION_TEXT`] characters.
fn bounded(text: String) -> String {
    match text.char_indices().nth(MAX_VIOLATION_TEXT) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

impl Invalid {
    /// A request with one bad field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut invalid = Self::default();
        invalid.add(field, description);
        invalid
    }

    /// Records a problem with `field`. Beyond [`MAX_VIOLATIONS`], problems are only counted.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.violations.len() >= MAX_VIOLATIONS {
            self.more += 1;
            return;
        }
        self.violations.push(FieldViolation {
            field: bounded(field.into()),
            description: bounded(description.into()),
        });
    }

    /// Keeps the value of a successful parse, or records the problem against `field`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// `Err(self)` when anything was recorded.
    pub fn into_result(mut self) -> Result<(), Self> {
        if self.violations.is_empty() {
            return Ok(());
        }
        if self.more > 0 {
            self.violations.push(FieldViolation {
                field: "request".into(),
                description: format!("{} more problems are not listed", self.more),
            });
            self.more = 0;
        }
        Err(self)
    }
}

/// Everything a gateway RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The named resource does not exist.
    #[error("{resource_type} {name} not found")]
    NotFound {
        /// ErrorInfo reason, such as `ORGANIZATION_NOT_FOUND`.
        reason: &'static str,
        /// `organization`.
        resource_type: &'static str,
        /// How the caller named it.
        name: String,
    },
    /// A uniqueness rule refused the change.
    #[error("{description}")]
    AlreadyExists {
        /// ErrorInfo reason.
        reason: &'static str,
        /// `organization`.
        resource_type: &'static str,
        /// The clashing value.
        name: String,
        /// For the caller.
        description: String,
    },
    /// The caller's identity is missing or unproven.
    #[error("unauthenticated: {description}")]
    Unauthenticated {
        /// ErrorInfo reason.
        reason: &'static str,
        /// For the caller; never contains the presented credential.
        description: String,
    },
    /// The caller is proven but the policy does not allow the call.
    #[error("denied: {explanation}")]
    Denied {
        /// ErrorInfo reason: which check failed.
        reason: &'static str,
        /// For the caller.
        explanation: String,
        /// The request field at fault, when the caller can fix the call by changing it (a URL
        /// outside its allow-list): then the answer is INVALID_ARGUMENT naming it.
        field: Option<&'static str>,
    },
    /// The caller's deadline (or the configured default) passed.
    #[error("the deadline passed")]
    DeadlineExceeded,
    /// Too many calls are in flight; this one was refused at once.
    #[error("overloaded")]
    Overloaded,
    /// The call's audit record could not be written, so its result is withheld.
    #[error("the audit record could not be written")]
    AuditUnavailable,
    /// The target is not in a state the call applies to (an invitation is already active).
    #[error("{description}")]
    FailedPrecondition {
        /// ErrorInfo reason, such as `INVITATION_ALREADY_ACTIVE`.
        reason: &'static str,
        /// What the precondition is about, such as `organization/org_...`.
        subject: String,
        /// For the caller: which rule and how to proceed.
        description: String,
    },
    /// The caller holds as many WatchSetup streams as its rule allows.
    #[error("the caller already holds {limit} setup watches")]
    TooManyWatchers {
        /// The rule's `max_watchers`.
        limit: u32,
    },
    /// A setup watch ended because the watcher fell too far behind the events; it resumes from
    /// its last cursor.
    #[error("the watch fell behind")]
    WatchFellBehind,
    /// The gateway is shutting down; streams end so callers reconnect elsewhere.
    #[error("shutting down")]
    ShuttingDown,
    /// A WorkOS call failed, or the gateway refused to make it (quota, open circuit).
    #[error("{}", .0.message)]
    Upstream(Box<Upstream>),
}

/// How an upstream failure maps to a gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamClass {
    /// Retry later: WorkOS is failing, unreachable, or the circuit is open.
    Unavailable,
    /// WorkOS did not answer in time.
    Timeout,
    /// A configuration or protocol problem on the gateway's side.
    Internal,
    /// WorkOS refused the request's content.
    InvalidArgument,
    /// WorkOS does not have it.
    NotFound,
    /// WorkOS reports a conflict.
    Conflict,
    /// A quota or rate limit.
    Exhausted,
}

/// A failed upstream call, already classified.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The gRPC code it maps to.
    pub class: UpstreamClass,
    /// ErrorInfo reason.
    pub reason: &'static str,
    /// For the caller.
    pub message: String,
    /// WorkOS's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// WorkOS's error code, such as `external_id_already_used`.
    pub workos_code: Option<String>,
    /// WorkOS's request id, when it answered.
    pub workos_request_id: Option<String>,
    /// When retrying makes sense.
    pub retry_after: Option<Duration>,
    /// Fields WorkOS refused.
    pub field_violations: Vec<FieldViolation>,
    /// The quota that refused the call (a `QuotaFailure` subject).
    pub quota_subject: Option<String>,
    /// What an operator should see, once, when this failure reaches a caller.
    pub log: Option<UpstreamLog>,
}

/// The log line for an upstream failure.
#[derive(Debug, Clone)]
pub struct UpstreamLog {
    /// An error (the gateway is misconfigured) rather than a warning (WorkOS is struggling).
    pub is_error: bool,
    /// What happened, upstream message included; never shown to callers.
    pub text: String,
}

impl Error {
    /// The `ErrorInfo` reason of this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "INVALID_ARGUMENT",
            Self::NotFound { reason, .. }
            | Self::AlreadyExists { reason, .. }
            | Self::Unauthenticated { reason, .. }
            | Self::Denied { reason, .. } => reason,
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Overloaded => "OVERLOADED",
            Self::AuditUnavailable => "AUDIT_UNAVAILABLE",
            Self::FailedPrecondition { reason, .. } => reason,
            Self::TooManyWatchers { .. } => "WATCHERS_EXHAUSTED",
            Self::WatchFellBehind => "WATCH_FELL_BEHIND",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::Upstream(upstream) => upstream.reason,
        }
    }

    /// Whether the call was refused for who the caller is or what it asked to do.
    pub fn is_denial(&self) -> bool {
        matches!(self, Self::Unauthenticated { .. } | Self::Denied { .. })
    }

    /// The upstream failure, when this is one.
    pub fn upstream(&self) -> Option<&Upstream> {
        match self {
            Self::Upstream(upstream) => Some(upstream),
            _ => None,
        }
    }

    /// WorkOS's error code, when WorkOS refused the call with one.
    pub fn workos_code(&self) -> Option<&str> {
        self.upstream().and_then(|u| u.workos_code.as_deref())
    }

    /// Turns WorkOS's 404 into NOT_FOUND for the resource the call was about.
    pub fn not_found_as(self, resource_type: &'static str, name: impl Into<String>) -> Self {
        match &self {
            Self::Upstream(upstream) if upstream.http_status == Some(404) => Self::NotFound {
                reason: not_found_reason(resource_type),
                resource_type,
                name: name.into(),
            },
            _ => self,
        }
    }
}

/// `ORGANIZATION_NOT_FOUND` and the like.
pub fn not_found_reason(resource_type: &'static str) -> &'static str {
    match resource_type {
        "organization" => "ORGANIZATION_NOT_FOUND",
        "it_contact" => "IT_CONTACT_NOT_FOUND",
        "invitation" => "INVITATION_NOT_FOUND",
        _ => "NOT_FOUND",
    }
}

impl Upstream {
    /// A failure of `class` with nothing more known than its reason and message.
    pub fn new(class: UpstreamClass, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            reason,
            message: message.into(),
            http_status: None,
            workos_code: None,
            workos_request_id: None,
            retry_after: None,
            field_violations: Vec::new(),
            quota_subject: None,
            log: None,
        }
    }
}

impl From<Upstream> for Error {
    fn from(upstream: Upstream) -> Self {
        Self::Upstream(Box::new(upstream))
    }
}
