//! What can go wrong talking to WorkOS, kept precise enough for `crate::error` to choose the
//! right gRPC code. Nothing here is shown to callers verbatim: upstream messages go to logs.

use std::{sync::Arc, time::Duration};

use super::quota::QuotaExceeded;
use crate::http::HttpError;

/// A failed WorkOS call. Cheap to clone, so one failed lookup can answer every caller that was
/// waiting on it.
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
    /// WorkOS did not answer within the request timeout.
    #[error("WorkOS did not answer in time")]
    Timeout,
    /// WorkOS could not be reached, or the connection broke.
    #[error("could not reach WorkOS")]
    Transport(#[source] Arc<HttpError>),
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
    /// The circuit for this route family is open: WorkOS has been failing.
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
    /// WorkOS sent a field this client cannot read (a timestamp that is not ISO-8601, an id of
    /// the wrong shape).
    #[error("WorkOS sent an unreadable `{field}`")]
    Malformed {
        /// The field.
        field: &'static str,
    },
}

impl Error {
    /// The HTTP status WorkOS answered with, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// WorkOS's error code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The WorkOS request id, when the failure came with one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } | Self::Decode { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn from_http(error: HttpError) -> Self {
        match error {
            HttpError::Timeout => Self::Timeout,
            other => Self::Transport(Arc::new(other)),
        }
    }

    /// Whether the request certainly never reached WorkOS (so even a non-idempotent call may be
    /// sent again).
    pub(crate) fn never_sent(&self) -> bool {
        matches!(self, Self::Transport(error) if error.never_sent())
    }

    /// Whether this failure says WorkOS is unhealthy (for the circuit breaker). Client errors,
    /// rate limits and our own refusals say nothing about its health.
    pub(crate) fn is_upstream_failure(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status == 408 || *status >= 500,
            Self::Timeout | Self::Transport(_) => true,
            _ => false,
        }
    }
}
