//! One error type for every handler: it carries the status and a safe, specific message; the
//! JSON shape `{"error": {"code", "message"}}` is the same everywhere.

use hyper::StatusCode;

use super::{Response, json_response};
use crate::domain::event::Position;
use crate::domain::validation::FieldError;
use crate::kafka::KafkaError;
use crate::messages::api::{ErrorBody, ErrorDetail};
use crate::shop::ShopError;

/// An error answer: status, a stable machine code, and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The field errors of a validation error.
    pub fields: Option<Vec<FieldError>>,
    /// A 405's methods: the `Allow` header, and `allow` in the body.
    pub allow: Option<Vec<String>>,
    /// Where a written event landed.
    pub kafka: Option<Position>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: None,
            allow: None,
            kafka: None,
        }
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
        );
        error.allow = Some(allowed.iter().map(|m| m.to_string()).collect());
        error
    }

    /// The error object of the answer.
    pub fn detail(&self) -> ErrorDetail<'_> {
        ErrorDetail {
            code: self.code,
            message: &self.message,
            field: self
                .fields
                .as_ref()
                .and_then(|f| f.first())
                .map(|f| f.field.as_str()),
            fields: self.fields.as_deref(),
            allow: self.allow.as_deref(),
            kafka: self.kafka,
        }
    }

    /// The JSON answer for this error.
    pub fn into_response(self) -> Response {
        let mut response = json_response(
            self.status,
            &ErrorBody {
                error: self.detail(),
            },
        );
        if let Some(allow) = self
            .allow
            .and_then(|a| hyper::header::HeaderValue::from_str(&a.join(", ")).ok())
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
        // The detail (broker addresses, its error texts) is for the log, not for clients.
        tracing::debug!(%error, "a request failed on Kafka");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            error.public_message(),
        )
    }
}

impl From<crate::model::StoreError> for ApiError {
    fn from(error: crate::model::StoreError) -> Self {
        tracing::warn!(%error, "the store failed a request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the read model's store is not available right now (a full disk or an unwritable \
             data dir: see the server's log); retry later",
        )
    }
}

impl From<ShopError> for ApiError {
    fn from(error: ShopError) -> Self {
        let message = error.to_string();
        match error {
            ShopError::Invalid(invalid) => {
                let mut error = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    message,
                );
                error.fields = Some(invalid.0);
                error
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
                let mut error = Self::new(StatusCode::GATEWAY_TIMEOUT, "not_visible_yet", message);
                error.kafka = Some(position);
                error
            }
        }
    }
}

impl From<crate::domain::validation::Invalid> for ApiError {
    fn from(invalid: crate::domain::validation::Invalid) -> Self {
        ShopError::Invalid(invalid).into()
    }
}
