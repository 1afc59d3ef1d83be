//! The gateway's one error type and the one place it becomes a gRPC status.
//!
//! Every status carries exactly one `ErrorInfo` (reason in UPPER_SNAKE, domain `adminportal.v1`)
//! plus the detail that fits: `BadRequest` naming proto fields, `ResourceInfo` on NOT_FOUND,
//! `RetryInfo` where retrying helps. Messages never carry upstream bodies, URLs, keys or links:
//! those go to the log, with the WorkOS request id so the two can be matched.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::workos;

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

/// A request with one or more invalid fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
pub struct Invalid {
    /// Every problem found, not only the first.
    pub violations: Vec<FieldViolation>,
}

impl Invalid {
    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
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
    pub fn into_result(self) -> Result<(), Self> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
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
    #[error("unauthenticated: {0}")]
    Unauthenticated(crate::auth::identity::AuthError),
    /// The caller is proven but the policy does not allow the call.
    #[error("denied: {explanation}")]
    Denied {
        /// Which check failed.
        denial: crate::auth::policy::Denial,
        /// For the caller.
        explanation: String,
    },
    /// The caller's deadline (or the configured default) passed.
    #[error("the deadline passed")]
    DeadlineExceeded,
    /// Too many calls are in flight; this one was refused at once.
    #[error("overloaded")]
    Overloaded,
    /// A WorkOS call failed in a way with no more specific meaning.
    #[error("WorkOS call failed")]
    Upstream(#[from] workos::Error),
}

impl Error {
    /// Maps a WorkOS 404 to NOT_FOUND for the resource the call was about.
    pub fn not_found_as(
        error: workos::Error,
        resource_type: &'static str,
        name: impl Into<String>,
    ) -> Self {
        if error.status() == Some(404) {
            Self::NotFound {
                resource_type,
                name: name.into(),
            }
        } else {
            Self::Upstream(error)
        }
    }
}

fn info(details: &mut ErrorDetails, reason: &str, metadata: HashMap<String, String>) {
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let mut details = ErrorDetails::new();
        match error {
            Error::Invalid(invalid) => {
                info(&mut details, "INVALID_ARGUMENT", HashMap::new());
                for v in &invalid.violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                let message = invalid.to_string();
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound {
                resource_type,
                name,
            } => {
                info(
                    &mut details,
                    &format!("{}_NOT_FOUND", resource_type.to_ascii_uppercase()),
                    HashMap::new(),
                );
                details.set_resource_info(
                    resource_type,
                    name.clone(),
                    "",
                    format!("no {resource_type} {name}"),
                );
                Status::with_error_details(
                    Code::NotFound,
                    format!("{resource_type} {name} not found"),
                    details,
                )
            }
            Error::AlreadyExists {
                reason,
                resource_type,
                name,
                description,
            } => {
                info(&mut details, reason, HashMap::new());
                details.set_resource_info(resource_type, name, "", description.clone());
                Status::with_error_details(Code::AlreadyExists, description, details)
            }
            Error::Unauthenticated(error) => {
                info(&mut details, error.reason, HashMap::new());
                Status::with_error_details(Code::Unauthenticated, error.description, details)
            }
            Error::Denied {
                denial,
                explanation,
            } => {
                info(&mut details, denial.reason(), HashMap::new());
                // A URL outside the caller's allow-list is a bad argument the caller can fix, so
                // it is INVALID_ARGUMENT naming the field; every other denial is PERMISSION_DENIED.
                if let crate::auth::policy::Denial::ReturnUrlNotAllowed { field } = denial {
                    details.add_bad_request_violation(field, explanation.clone());
                    return Status::with_error_details(Code::InvalidArgument, explanation, details);
                }
                Status::with_error_details(Code::PermissionDenied, explanation, details)
            }
            Error::DeadlineExceeded => {
                info(&mut details, "DEADLINE_EXCEEDED", HashMap::new());
                Status::with_error_details(
                    Code::DeadlineExceeded,
                    "the deadline passed before the call finished",
                    details,
                )
            }
            Error::Overloaded => {
                info(&mut details, "OVERLOADED", HashMap::new());
                details.set_retry_info(Some(Duration::from_millis(100)));
                Status::with_error_details(
                    Code::ResourceExhausted,
                    "the gateway is at its in-flight limit; retry shortly",
                    details,
                )
            }
            Error::Upstream(error) => upstream_status(error, details),
        }
    }
}

/// The mapping for WorkOS failures. Logged here, once, with the WorkOS request id and message;
/// the caller gets a code, a reason and the request id, never the upstream body.
fn upstream_status(error: workos::Error, mut details: ErrorDetails) -> Status {
    let mut metadata = HashMap::new();
    if let Some(id) = error.request_id() {
        metadata.insert("workos_request_id".to_owned(), id.to_owned());
    }
    let (code, reason, message, retry): (Code, &str, String, Option<Duration>) = match &error {
        workos::Error::Api {
            status,
            code,
            field_errors,
            retry_after,
            message: upstream,
            ..
        } => {
            if let Some(code) = code {
                metadata.insert("workos_code".to_owned(), code.clone());
            }
            match status {
                401 => {
                    tracing::error!(error = %error, "WorkOS rejected the gateway's API key");
                    (
                        Code::Internal,
                        "WORKOS_API_KEY_REJECTED",
                        "the gateway's WorkOS credentials were rejected".into(),
                        None,
                    )
                }
                403 => {
                    tracing::error!(error = %error, upstream_message = ?upstream, "WorkOS refused the gateway's API key permission");
                    (
                        Code::Internal,
                        "WORKOS_PERMISSION_DENIED",
                        "the gateway's WorkOS key lacks a permission".into(),
                        None,
                    )
                }
                404 => (
                    Code::NotFound,
                    "WORKOS_NOT_FOUND",
                    "not found in WorkOS".into(),
                    None,
                ),
                409 => (
                    Code::AlreadyExists,
                    "WORKOS_CONFLICT",
                    "WorkOS reports a conflict".into(),
                    None,
                ),
                400 if code.as_deref() == Some("invalid_metadata") => {
                    details.add_bad_request_violation("metadata", "refused by WorkOS");
                    (
                        Code::InvalidArgument,
                        "WORKOS_INVALID_METADATA",
                        "WorkOS refused the metadata".into(),
                        None,
                    )
                }
                400 | 422 => {
                    for (field, problem) in field_errors {
                        details.add_bad_request_violation(field.clone(), problem.clone());
                    }
                    tracing::warn!(error = %error, upstream_message = ?upstream, "WorkOS refused a request the gateway validated");
                    (
                        Code::InvalidArgument,
                        "WORKOS_REJECTED_REQUEST",
                        "WorkOS refused the request".into(),
                        None,
                    )
                }
                429 => (
                    Code::ResourceExhausted,
                    "WORKOS_RATE_LIMITED",
                    "WorkOS rate limit reached; retry later".into(),
                    Some(retry_after.unwrap_or(Duration::from_secs(1))),
                ),
                408 | 500..=599 => {
                    tracing::warn!(error = %error, "WorkOS is failing");
                    (
                        Code::Unavailable,
                        "WORKOS_UNAVAILABLE",
                        "WorkOS is unavailable; retry later".into(),
                        Some(retry_after.unwrap_or(Duration::from_secs(1))),
                    )
                }
                _ => {
                    tracing::error!(error = %error, upstream_message = ?upstream, "WorkOS answered an unexpected status");
                    (
                        Code::Internal,
                        "WORKOS_UNEXPECTED_STATUS",
                        "WorkOS answered unexpectedly".into(),
                        None,
                    )
                }
            }
        }
        workos::Error::Timeout => {
            tracing::warn!(error = ?error, "WorkOS did not answer in time");
            (
                Code::DeadlineExceeded,
                "WORKOS_TIMEOUT",
                "WorkOS did not answer in time".into(),
                None,
            )
        }
        workos::Error::Transport(_) => {
            tracing::warn!(error = ?error, "could not reach WorkOS");
            (
                Code::Unavailable,
                "WORKOS_UNREACHABLE",
                "WorkOS could not be reached; retry later".into(),
                Some(Duration::from_secs(1)),
            )
        }
        workos::Error::CircuitOpen { retry_after } => (
            Code::Unavailable,
            "WORKOS_CIRCUIT_OPEN",
            "WorkOS has been failing; calls are paused until the next probe".into(),
            Some(*retry_after),
        ),
        workos::Error::Quota(refused) => {
            details.add_quota_failure_violation(
                refused.scope.subject(),
                "the gateway's WorkOS quota for this is spent",
            );
            let reason = match refused.scope {
                workos::quota::QuotaScope::Caller(_) => "CALLER_QUOTA_EXHAUSTED",
                workos::quota::QuotaScope::FairShare(_) => "FAIR_SHARE_EXHAUSTED",
                workos::quota::QuotaScope::Workos | workos::quota::QuotaScope::WorkosDeletes => {
                    "WORKOS_QUOTA_EXHAUSTED"
                }
            };
            (
                Code::ResourceExhausted,
                reason,
                format!("quota {} reached; retry later", refused.scope),
                Some(refused.retry_after),
            )
        }
        workos::Error::DeadlineExceeded => (
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
            "the deadline passed before WorkOS answered".into(),
            None,
        ),
        workos::Error::Decode { .. } | workos::Error::Malformed { .. } => {
            tracing::error!(error = ?error, "WorkOS sent a response the gateway cannot read");
            (
                Code::Internal,
                "WORKOS_MALFORMED_RESPONSE",
                "WorkOS sent a response the gateway cannot read".into(),
                None,
            )
        }
    };
    info(&mut details, reason, metadata);
    if let Some(delay) = retry {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code, message, details)
}
