//! One error type for every handler: it carries the status and a safe, specific message; the
//! JSON shape `{"error": {"code", "message"}}` is the same everywhere.

use hyper::StatusCode;

use super::{Response, json_response};
use crate::kafka::KafkaError;
use crate::shop::ShopError;

/// An error answer: status, a stable machine code, and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the error object (`fields` of a validation error, say).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// The `Allow` header of a 405: the methods the path answers.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            allow: None,
        }
    }

    /// Adds a member to the error object.
    pub fn with(mut self, name: &str, value: serde_json::Value) -> Self {
        self.details
            .get_or_insert_with(serde_json::Map::new)
            .insert(name.to_string(), value);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 405 that names the methods `path` answers, in the body and in `Allow` (RFC 9110).
    pub fn method_not_allowed(method: &hyper::Method, path: &str, allowed: &[&str]) -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{method} is not allowed on {path}; it answers {}",
                allowed.join(", ")
            ),
        )
        .with("allow", serde_json::json!(allowed));
        error.allow = Some(allowed.join(", "));
        error
    }

    /// The JSON answer for this error.
    pub fn into_response(self) -> Response {
        let mut error = self.details.unwrap_or_default();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        let mut response = json_response(self.status, &serde_json::json!({ "error": error }));
        if let Some(allow) = self
            .allow
            .and_then(|a| hyper::header::HeaderValue::from_str(&a).ok())
        {
            response.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        response
    }
}

impl From<KafkaError> for ApiError {
    /// Kafka trouble is the server's dependency failing, not the client's fault: 503, so that
    /// clients retry (with the same `Idempotency-Key`).
    fn from(error: KafkaError) -> Self {
        let code = match error {
            KafkaError::Timeout { .. } => "kafka_timeout",
            _ => "kafka_unavailable",
        };
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, error.to_string())
    }
}

impl From<crate::model::StoreError> for ApiError {
    fn from(error: crate::model::StoreError) -> Self {
        tracing::warn!(%error, "the store failed a request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the read model's store is not available: {error}"),
        )
    }
}

impl From<ShopError> for ApiError {
    fn from(error: ShopError) -> Self {
        let message = error.to_string();
        match error {
            ShopError::Invalid(invalid) => {
                let first = invalid
                    .0
                    .first()
                    .map(|f| f.field.clone())
                    .unwrap_or_default();
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    message,
                )
                .with("field", first.into())
                .with(
                    "fields",
                    serde_json::to_value(&invalid.0).unwrap_or_default(),
                )
            }
            ShopError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            ShopError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, "illegal_transition", message)
            }
            ShopError::IdempotencyMismatch => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            ),
            ShopError::Kafka(kafka) => kafka.into(),
            ShopError::CatchingUp => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "catching_up", message)
            }
            ShopError::Store(store) => store.into(),
            ShopError::NotVisible { position, .. } => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "not_visible_yet", message)
                    .with("kafka", serde_json::to_value(position).unwrap_or_default())
            }
        }
    }
}

impl From<crate::domain::validation::Invalid> for ApiError {
    fn from(invalid: crate::domain::validation::Invalid) -> Self {
        ShopError::Invalid(invalid).into()
    }
}
