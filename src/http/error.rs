//! One error type for every handler: it carries the status and a safe, specific message; the
//! JSON shape `{"error": {"code", "message"}}` is the same everywhere.

use hyper::StatusCode;

use super::{Response, json_response};
use crate::kafka::KafkaError;

/// An error answer: status, a stable machine code, and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(method: &hyper::Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )
    }

    /// The JSON answer for this error.
    pub fn into_response(self) -> Response {
        json_response(
            self.status,
            &serde_json::json!({ "error": { "code": self.code, "message": self.message } }),
        )
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
