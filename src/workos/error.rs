//! What can go wrong talking to WorkOS, kept precise enough to choose the right answer, and its
//! one conversion into the core's error type. Upstream messages go to logs, never to callers.

use std::{sync::Arc, time::Duration};

use super::quota::QuotaExceeded;
use crate::error::{self as core, FieldViolation, UpstreamClass, UpstreamLog};

/// A failed WorkOS call. Cheap to clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// WorkOS answered with a non-2xx status.
    #[error("WorkOS answered {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// WorkOS's error code, such as `external_id_already_used`.
        code: Option<String>,
        /// WorkOS's message, for logs only.
        message: Option<String>,
        /// Field errors from a 422, as `(field, code)`.
        field_errors: Vec<(String, String)>,
        /// `X-Request-ID` of the answer.
        request_id: Option<String>,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// WorkOS did not answer within the attempt's timeout.
    #[error("WorkOS did not answer in time")]
    Timeout,
    /// WorkOS could not be reached, or the connection broke.
    #[error("could not reach WorkOS")]
    Transport {
        /// What reqwest saw.
        #[source]
        source: Arc<reqwest::Error>,
        /// Whether the request certainly never left (no connection could be made).
        never_sent: bool,
    },
    /// The forward proxy refused to carry the request (407: its credentials were refused).
    #[error("the forward proxy refused the request ({status})")]
    ProxyRefused {
        /// The proxy's status.
        status: u16,
    },
    /// The request could not be built or sent at all: a local fault, not an upstream one, so
    /// it is never retried and says nothing about WorkOS's health.
    #[error("the request to WorkOS could not be built")]
    Local {
        /// What was wrong.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// WorkOS answered 2xx with a body that is not what its API promises.
    #[error("WorkOS sent a response that could not be read (status {status})")]
    Decode {
        /// HTTP status.
        status: u16,
        /// `X-Request-ID` of the answer.
        request_id: Option<String>,
        /// What was wrong with it.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// WorkOS answered with a body larger than any answer of its API.
    #[error("WorkOS sent a response larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The circuit is open: WorkOS has been failing.
    #[error("WorkOS is failing; calls are paused")]
    CircuitOpen {
        /// When the next probe goes through.
        retry_after: Duration,
    },
    /// The call would exceed the gateway's WorkOS quota.
    #[error("WorkOS quota reached ({})", .0.scope)]
    Quota(QuotaExceeded),
    /// The caller's deadline passed before WorkOS answered.
    #[error("the deadline passed before WorkOS answered")]
    DeadlineExceeded,
    /// The client's own settings cannot be used (refused when the client is built, so never
    /// met by a call).
    #[error("the WorkOS client's settings are not usable: {problem}")]
    Settings {
        /// What is wrong.
        problem: String,
    },
    /// WorkOS sent a field this client cannot read (a timestamp that is not ISO-8601, an id of
    /// the wrong shape).
    #[error("WorkOS sent an unreadable `{field}`")]
    Malformed {
        /// The field.
        field: &'static str,
    },
    /// A call that makes something new, and that sending twice would make twice, failed after it
    /// may have reached WorkOS: the change may have been made. Never retried blindly; creates
    /// reconcile by reading back what they made.
    #[error("WorkOS may have made the change: {0}")]
    OutcomeUnknown(Box<Error>),
}

impl Error {
    /// The WorkOS request id, when the failure came with one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } | Self::Decode { request_id, .. } => request_id.as_deref(),
            Self::OutcomeUnknown(error) => error.request_id(),
            _ => None,
        }
    }

    pub(super) fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_builder() {
            Self::Local {
                source: Arc::new(error),
            }
        } else {
            Self::Transport {
                never_sent: error.is_connect(),
                source: Arc::new(error),
            }
        }
    }

    /// Whether the request certainly never reached WorkOS (so even a non-idempotent call may be
    /// sent again).
    pub(super) fn never_sent(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                never_sent: true,
                ..
            }
        )
    }

    /// Whether this attempt's failure proves WorkOS made no change: it refused the request (a
    /// 4xx other than 408, 429 included), or the request never reached it.
    pub(super) fn proves_nothing_committed(&self) -> bool {
        match self {
            Self::Api { status, .. } => (400..500).contains(status) && *status != 408,
            Self::Transport { never_sent, .. } => *never_sent,
            Self::Local { .. } | Self::ProxyRefused { .. } => true,
            _ => false,
        }
    }

    /// Whether this failure says WorkOS is unhealthy (for the circuit breaker). Client errors,
    /// rate limits and the gateway's own refusals say nothing about its health.
    pub(super) fn is_upstream_failure(&self) -> bool {
        match self {
            Self::OutcomeUnknown(error) => error.is_upstream_failure(),
            Self::Api { status, .. } => *status == 408 || *status >= 500,
            Self::Timeout | Self::Transport { .. } | Self::ProxyRefused { .. } => true,
            _ => false,
        }
    }

    /// Whether this failure belongs to the call that met it (its quota, its deadline) rather
    /// than to the lookup, so another caller sharing the lookup must not inherit it.
    pub(super) fn is_callers_own(&self) -> bool {
        matches!(self, Self::Quota(_) | Self::DeadlineExceeded)
    }

    /// WorkOS's 404.
    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }

    /// A 404 as WorkOS would answer it, for a remembered absence.
    pub(super) fn not_found() -> Self {
        Self::Api {
            status: 404,
            code: Some("entity_not_found".to_owned()),
            message: None,
            field_errors: Vec::new(),
            request_id: None,
            retry_after: None,
        }
    }
}

/// The answer for a change WorkOS may or may not have made.
pub fn outcome_unknown(detail: &str) -> core::Upstream {
    core::Upstream {
        log: log(
            true,
            format!("a WorkOS change may or may not have been made: {detail}"),
        ),
        ..core::Upstream::new(
            UpstreamClass::Unavailable,
            "WORKOS_OUTCOME_UNKNOWN",
            "WorkOS did not confirm the change and it may have been made: look before trying again",
        )
    }
}

fn log(is_error: bool, text: String) -> Option<UpstreamLog> {
    Some(UpstreamLog { is_error, text })
}

impl From<Error> for core::Error {
    fn from(error: Error) -> Self {
        use UpstreamClass as C;
        let described = format!("{error}: {}", chain(&error));
        let mut out = match &error {
            Error::Api {
                status,
                code,
                field_errors,
                retry_after,
                message: upstream_message,
                request_id,
            } => {
                let with_message = || format!("{described}; WorkOS said {upstream_message:?}");
                let mut out = match status {
                    401 => core::Upstream {
                        log: log(
                            true,
                            format!("WorkOS rejected the gateway's API key: {described}"),
                        ),
                        ..core::Upstream::new(
                            C::Internal,
                            "WORKOS_API_KEY_REJECTED",
                            "the gateway's WorkOS credentials were rejected",
                        )
                    },
                    403 => core::Upstream {
                        log: log(
                            true,
                            format!(
                                "WorkOS refused the gateway's API key permission: {}",
                                with_message()
                            ),
                        ),
                        ..core::Upstream::new(
                            C::Internal,
                            "WORKOS_PERMISSION_DENIED",
                            "the gateway's WorkOS key lacks a permission",
                        )
                    },
                    404 => {
                        core::Upstream::new(C::NotFound, "WORKOS_NOT_FOUND", "not found in WorkOS")
                    }
                    409 => core::Upstream::new(
                        C::Conflict,
                        "WORKOS_CONFLICT",
                        "WorkOS reports a conflict",
                    ),
                    400 if code.as_deref() == Some("invalid_metadata") => core::Upstream {
                        field_violations: vec![FieldViolation {
                            field: "metadata".into(),
                            description: "refused by WorkOS".into(),
                        }],
                        ..core::Upstream::new(
                            C::InvalidArgument,
                            "WORKOS_INVALID_METADATA",
                            "WorkOS refused the metadata",
                        )
                    },
                    400 | 422 => core::Upstream {
                        field_violations: field_errors
                            .iter()
                            .map(|(field, problem)| FieldViolation {
                                field: field.clone(),
                                description: problem.clone(),
                            })
                            .collect(),
                        log: log(
                            false,
                            format!(
                                "WorkOS refused a request the gateway validated: {}",
                                with_message()
                            ),
                        ),
                        ..core::Upstream::new(
                            C::InvalidArgument,
                            "WORKOS_REJECTED_REQUEST",
                            "WorkOS refused the request",
                        )
                    },
                    429 => core::Upstream {
                        retry_after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
                        ..core::Upstream::new(
                            C::Exhausted,
                            "WORKOS_RATE_LIMITED",
                            "WorkOS rate limit reached; retry later",
                        )
                    },
                    408 | 500..=599 => core::Upstream {
                        retry_after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
                        log: log(false, format!("WorkOS is failing: {described}")),
                        ..core::Upstream::new(
                            C::Unavailable,
                            "WORKOS_UNAVAILABLE",
                            "WorkOS is unavailable; retry later",
                        )
                    },
                    _ => core::Upstream {
                        log: log(
                            true,
                            format!("WorkOS answered an unexpected status: {}", with_message()),
                        ),
                        ..core::Upstream::new(
                            C::Internal,
                            "WORKOS_UNEXPECTED_STATUS",
                            "WorkOS answered unexpectedly",
                        )
                    },
                };
                out.http_status = Some(*status);
                out.workos_code = code.clone();
                out.workos_request_id = request_id.clone();
                out
            }
            Error::Timeout => core::Upstream {
                log: log(false, format!("WorkOS did not answer in time: {described}")),
                ..core::Upstream::new(
                    C::Timeout,
                    "WORKOS_TIMEOUT",
                    "WorkOS did not answer in time",
                )
            },
            Error::Transport { .. } | Error::ProxyRefused { .. } => core::Upstream {
                retry_after: Some(Duration::from_secs(1)),
                log: log(false, format!("could not reach WorkOS: {described}")),
                ..core::Upstream::new(
                    C::Unavailable,
                    "WORKOS_UNREACHABLE",
                    "WorkOS could not be reached; retry later",
                )
            },
            Error::Local { .. } | Error::Settings { .. } => core::Upstream {
                log: log(
                    true,
                    format!("the gateway could not build a WorkOS request: {described}"),
                ),
                ..core::Upstream::new(
                    C::Internal,
                    "WORKOS_REQUEST_NOT_BUILT",
                    "the gateway could not build the WorkOS request",
                )
            },
            Error::CircuitOpen { retry_after } => core::Upstream {
                retry_after: Some(*retry_after),
                ..core::Upstream::new(
                    C::Unavailable,
                    "WORKOS_CIRCUIT_OPEN",
                    "WorkOS has been failing; calls are paused until the next probe",
                )
            },
            Error::Quota(refused) => core::Upstream {
                retry_after: Some(refused.retry_after),
                quota_subject: Some(refused.scope.subject()),
                ..core::Upstream::new(
                    C::Exhausted,
                    refused.scope.reason(),
                    format!("quota {} reached; retry later", refused.scope),
                )
            },
            Error::DeadlineExceeded => core::Upstream::new(
                C::Timeout,
                "DEADLINE_EXCEEDED",
                "the deadline passed before WorkOS answered",
            ),
            Error::OutcomeUnknown(_) => outcome_unknown(&described),
            Error::Decode { .. } | Error::Malformed { .. } | Error::TooLarge { .. } => {
                core::Upstream {
                    log: log(
                        true,
                        format!("WorkOS sent a response the gateway cannot read: {described}"),
                    ),
                    ..core::Upstream::new(
                        C::Internal,
                        "WORKOS_MALFORMED_RESPONSE",
                        "WorkOS sent a response the gateway cannot read",
                    )
                }
            }
        };
        if out.workos_request_id.is_none() {
            out.workos_request_id = error.request_id().map(str::to_owned);
        }
        out.into()
    }
}

/// The error's sources, joined, for logs.
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}
