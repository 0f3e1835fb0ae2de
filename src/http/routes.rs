//! Routing: a plain `match` on (method, path). Unknown paths get 404 and known paths with the
//! wrong method 405, both with the JSON error body.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::json;

use super::{ApiError, Request, Response, json_response};
use crate::AppState;

/// Answers one request.
pub async fn handle(state: Arc<AppState>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let result = match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/healthz") => Ok(healthz(&state)),
        (&Method::GET | &Method::HEAD, "/readyz") => Ok(readyz(&state)),
        (_, "/healthz" | "/readyz") => Err(ApiError::method_not_allowed(&method, &path)),
        _ => Err(ApiError::not_found(format!("no route for {method} {path}"))),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// The process is alive and serving; says nothing about Kafka (that is `/readyz`).
fn healthz(state: &AppState) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started_at.elapsed().as_secs(),
        }),
    )
}

/// 200 only while the broker answers and the topics exist; 503 with the reason otherwise.
fn readyz(state: &AppState) -> Response {
    match state.kafka.ready_session() {
        Ok(session) => json_response(
            StatusCode::OK,
            &json!({
                "status": "ready",
                "kafka": {
                    "brokers": state.config.kafka_brokers,
                    "topics": session.topics.topics,
                },
            }),
        ),
        Err(error) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "unavailable",
                "error": { "code": "kafka_unavailable", "message": error.to_string() },
            }),
        ),
    }
}
