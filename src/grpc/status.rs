//! The one place an [`Error`] becomes a `tonic::Status`.
//!
//! Every status carries exactly one `ErrorInfo` (the error's reason, domain `adminportal.v1`)
//! plus the detail that fits: `BadRequest` naming proto fields, `ResourceInfo` on NOT_FOUND and
//! ALREADY_EXISTS, `RetryInfo` where retrying helps, `QuotaFailure` naming the quota. Upstream
//! failures are logged here, once, with WorkOS's request id; the caller gets a code, a reason and
//! the request id, never the upstream body.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::error::{ERROR_DOMAIN, Error, Upstream, UpstreamClass};

/// Converts a failed call's error into its status.
pub(crate) fn from_error(error: Error) -> Status {
    let reason = error.reason();
    let mut details = ErrorDetails::new();
    let mut metadata = HashMap::new();
    let (code, message) = match error {
        Error::Invalid(invalid) => {
            for v in &invalid.violations {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
            (Code::InvalidArgument, invalid.to_string())
        }
        Error::NotFound {
            resource_type,
            name,
            ..
        } => {
            details.set_resource_info(
                resource_type,
                name.clone(),
                "",
                format!("no {resource_type} {name}"),
            );
            (Code::NotFound, format!("{resource_type} {name} not found"))
        }
        Error::AlreadyExists {
            resource_type,
            name,
            description,
            ..
        } => {
            details.set_resource_info(resource_type, name, "", description.clone());
            (Code::AlreadyExists, description)
        }
        Error::Unauthenticated { description, .. } => (Code::Unauthenticated, description),
        // A URL outside the caller's allow-list is a bad argument the caller can fix, so it is
        // INVALID_ARGUMENT naming the field; every other denial is PERMISSION_DENIED.
        Error::Denied {
            explanation,
            field: Some(field),
            ..
        } => {
            details.add_bad_request_violation(field, explanation.clone());
            (Code::InvalidArgument, explanation)
        }
        Error::Denied { explanation, .. } => (Code::PermissionDenied, explanation),
        Error::DeadlineExceeded => (
            Code::DeadlineExceeded,
            "the deadline passed before the call finished".to_owned(),
        ),
        Error::Overloaded => {
            details.set_retry_info(Some(Duration::from_millis(100)));
            (
                Code::ResourceExhausted,
                "the gateway is at its in-flight limit; retry shortly".to_owned(),
            )
        }
        Error::AuditUnavailable => {
            details.set_retry_info(Some(Duration::from_secs(1)));
            (
                Code::Unavailable,
                "the call's audit record could not be written, so its result is withheld; retry later"
                    .to_owned(),
            )
        }
        Error::FailedPrecondition {
            subject,
            description,
            reason,
        } => {
            details.add_precondition_failure_violation(reason, subject, description.clone());
            (Code::FailedPrecondition, description)
        }
        Error::TooManyWatchers { limit } => {
            details.add_quota_failure_violation(
                "caller:setup_watches",
                format!("at most {limit} concurrent WatchSetup streams per caller"),
            );
            (
                Code::ResourceExhausted,
                format!("the caller already holds {limit} WatchSetup streams, its limit"),
            )
        }
        // Both ends below are resumed by calling WatchSetup again with the last cursor.
        Error::WatchFellBehind => (
            Code::Aborted,
            "the watch fell too far behind the events; resume from the last cursor".to_owned(),
        ),
        Error::ShuttingDown => {
            details.set_retry_info(Some(Duration::ZERO));
            (
                Code::Unavailable,
                "the gateway is shutting down; resume from the last cursor".to_owned(),
            )
        }
        Error::Upstream(upstream) => upstream_status(*upstream, &mut details, &mut metadata),
    };
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

fn upstream_status(
    upstream: Upstream,
    details: &mut ErrorDetails,
    metadata: &mut HashMap<String, String>,
) -> (Code, String) {
    if let Some(log) = &upstream.log {
        let request_id = upstream.workos_request_id.as_deref().unwrap_or("");
        if log.is_error {
            tracing::error!(workos_request_id = request_id, "{}", log.text);
        } else {
            tracing::warn!(workos_request_id = request_id, "{}", log.text);
        }
    }
    if let Some(id) = upstream.workos_request_id {
        metadata.insert("workos_request_id".to_owned(), id);
    }
    if let Some(code) = upstream.workos_code {
        metadata.insert("workos_code".to_owned(), code);
    }
    for v in upstream.field_violations {
        details.add_bad_request_violation(v.field, v.description);
    }
    if let Some(subject) = upstream.quota_subject {
        details
            .add_quota_failure_violation(subject, "the gateway's WorkOS quota for this is spent");
    }
    if let Some(delay) = upstream.retry_after {
        details.set_retry_info(Some(delay));
    }
    let code = match upstream.class {
        UpstreamClass::Unavailable => Code::Unavailable,
        UpstreamClass::Timeout => Code::DeadlineExceeded,
        UpstreamClass::Internal => Code::Internal,
        UpstreamClass::InvalidArgument => Code::InvalidArgument,
        UpstreamClass::NotFound => Code::NotFound,
        UpstreamClass::Conflict => Code::AlreadyExists,
        UpstreamClass::Exhausted => Code::ResourceExhausted,
    };
    (code, upstream.message)
}

/// What prost says when a request message cannot be decoded (tonic answers it with INTERNAL,
/// before any handler runs).
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// What tonic says of a request message over the decoding limit (with OUT_OF_RANGE).
const TOO_LARGE: &str = "Error, decoded message length too large";

/// A tower response mapper for the whole server: a request whose message cannot be decoded
/// (malformed protobuf, a string that is not UTF-8) is the caller's mistake, so tonic's bare
/// INTERNAL becomes INVALID_ARGUMENT with an `ErrorInfo` (`MALFORMED_REQUEST`), like every other
/// error this gateway sends.
pub fn decode_failures_are_invalid_arguments(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers();
    let status = headers.get("grpc-status").map(http::HeaderValue::as_bytes);
    if status != Some(b"13") && status != Some(b"11") {
        return response;
    }
    let message = headers
        .get("grpc-message")
        .map(|v| percent_encoding::percent_decode(v.as_bytes()).decode_utf8_lossy())
        .unwrap_or_default();
    if status == Some(b"11") && message.starts_with(TOO_LARGE) {
        let mut details = ErrorDetails::new();
        details.set_error_info("REQUEST_TOO_LARGE", ERROR_DOMAIN, HashMap::new());
        return Status::with_error_details(
            Code::OutOfRange,
            format!(
                "the request message is larger than the {} KiB any request of this API needs",
                crate::server::MAX_REQUEST_MESSAGE_BYTES / 1024
            ),
            details,
        )
        .into_http();
    }
    if status != Some(b"13") || !message.starts_with(DECODE_FAILURE) {
        return response;
    }
    let mut details = ErrorDetails::new();
    details.set_error_info("MALFORMED_REQUEST", ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(
        Code::InvalidArgument,
        "the request message could not be decoded (malformed protobuf, or a string that is not UTF-8)",
        details,
    )
    .into_http()
}
