//! WorkOS-shaped HTTP plumbing for the emulator: JSON responses with the headers every WorkOS
//! answer carries, the error bodies WorkOS uses, and a request-body reader that turns every kind
//! of bad body into a WorkOS-shaped 4xx instead of axum's plain-text rejections.
//!
//! Bodies are read into `serde_json::Value` and checked field by field (see [`Fields`]) rather
//! than deserialised into structs, so each wrong field is reported by name, as WorkOS does.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

/// The most a request body may hold; larger bodies get 413.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `Content-Type` of every JSON answer, exactly as WorkOS sends it.
pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A JSON answer with WorkOS's content type.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    // Serialising a `Value` cannot fail: every key is a string.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    response
}

/// An error the emulator answers with, in one of the shapes WorkOS uses.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// `{"code", "message"}`, the common WorkOS error shape.
    pub(crate) fn coded(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "code": code, "message": message.into() }),
        }
    }

    /// `{"message"}` alone, the shape of WorkOS's older errors.
    pub(crate) fn message(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "message": message.into() }),
        }
    }

    /// 401 with the body WorkOS sends for a missing or wrong API key.
    pub(crate) fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: json!({ "message": "Unauthorized" }),
        }
    }

    /// 404 for an entity that does not exist, naming it.
    pub(crate) fn not_found(entity: &str, id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: json!({
                "code": "entity_not_found",
                "message": format!("{entity} not found: '{id}'."),
                "entity_id": id,
            }),
        }
    }

    /// 422 listing each invalid field, WorkOS's validation shape.
    pub(crate) fn validation(errors: Vec<FieldError>) -> Self {
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|e| json!({ "field": e.field, "code": e.code }))
            .collect();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "code": "invalid_request_parameters",
                "message": "Validation failed",
                "errors": errors,
            }),
        }
    }

    /// A route or method the emulator does not implement: 501, never a 404 that looks real.
    pub(crate) fn not_implemented(method: &str, path: &str) -> Self {
        Self::coded(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented_in_emulator",
            format!("{method} {path} is not implemented by the portal-gateway WorkOS emulator"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// One invalid field: its name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) code: String,
}

/// A JSON object request body. Rejections are WorkOS-shaped: 413 over [`MAX_BODY_BYTES`],
/// 400 for bytes that are not JSON, 422 for JSON that is not an object.
#[derive(Debug)]
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::coded(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "The request body is larger than 1 MiB.",
                )
            } else {
                ApiError::coded(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_body",
                    "The request body could not be read.",
                )
            }
        })?;
        // SDKs send an empty body with some POSTs (verify); treat it as `{}`.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::validation(vec![FieldError {
                field: "body".into(),
                code: "body must be a JSON object".into(),
            }])),
            Err(_) => Err(ApiError::coded(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "The request body is not valid JSON.",
            )),
        }
    }
}

/// Reads typed fields out of a JSON object, collecting one [`FieldError`] per bad field so a
/// request with three mistakes is told about all three.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    pub(crate) errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(object: &'a Map<String, Value>) -> Self {
        Self {
            object,
            errors: Vec::new(),
        }
    }

    /// Records an error against `field`.
    pub(crate) fn fail(&mut self, field: &str, code: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            code: code.into(),
        });
    }

    /// Rejects properties outside `allowed`, as WorkOS's request validation does.
    pub(crate) fn only(&mut self, allowed: &[&str]) {
        let unknown: Vec<String> = self
            .object
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.fail(&key, format!("property {key} should not exist"));
        }
    }

    /// Whether the key is present (even as `null`).
    pub(crate) fn has(&self, field: &str) -> bool {
        self.object.contains_key(field)
    }

    /// A string that must be present and non-empty.
    pub(crate) fn required_str(&mut self, field: &str) -> Option<&'a str> {
        match self.object.get(field) {
            None | Some(Value::Null) => {
                self.fail(field, format!("{field} is required"));
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.fail(field, format!("{field} should not be empty"));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.fail(field, format!("{field} must be a string"));
                None
            }
        }
    }

    /// An optional string: `Ok(None)` when absent or null.
    pub(crate) fn optional_str(&mut self, field: &str) -> Option<&'a str> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.fail(field, format!("{field} must be a string"));
                None
            }
        }
    }

    /// An optional boolean.
    pub(crate) fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.fail(field, format!("{field} must be a boolean value"));
                None
            }
        }
    }

    /// An optional array of strings.
    pub(crate) fn optional_strings(&mut self, field: &str) -> Option<Vec<&'a str>> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.as_str()),
                        _ => {
                            self.fail(field, format!("each value in {field} must be a string"));
                            return None;
                        }
                    }
                }
                Some(out)
            }
            Some(_) => {
                self.fail(field, format!("{field} must be an array"));
                None
            }
        }
    }

    /// The raw value, for fields with their own structure.
    pub(crate) fn raw(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field)
    }

    /// `Err` with a 422 when any field was bad.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// Whether `email` looks like an address: one `@`, a non-empty local part, a dotted domain.
pub(crate) fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `url` is an absolute http(s) URL.
pub(crate) fn looks_like_url(url: &str) -> bool {
    url::Url::parse(url)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false)
}

/// Whether `domain` is a plausible DNS name (labels of letters, digits and hyphens).
pub(crate) fn looks_like_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
