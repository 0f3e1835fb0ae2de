//! WebSocket sessions (`GET /ws`).

use std::sync::Arc;

use hyper::StatusCode;

use crate::AppState;
use crate::http::{ApiError, Request, Response};

/// Upgrades `GET /ws` to a live session.
pub async fn handle(_state: Arc<AppState>, _request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "the live stream is being built",
    )
    .into_response()
}
