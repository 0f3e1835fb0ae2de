//! The WebSocket upgrade of `GET /ws`: the cursor, the handshake (RFC 6455 section 4.2), then
//! a live session ([`crate::live::session`]) on its own task.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CONNECTION, HeaderMap, HeaderName, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::{ApiError, Request, Response};
use crate::AppState;
use crate::live::cursor::{Cursor, CursorError};
use crate::live::session::{LiveContext, Session};

/// Largest message a client may send (it only ever sends pings and close frames).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// The `cursor` query parameter, when there is one.
fn requested_cursor(request: &Request) -> Result<Option<Cursor>, CursorError> {
    super::request::query_params(request)
        .get("cursor")
        .map(|value| Cursor::parse(value))
        .transpose()
}

/// Upgrades `GET /ws` to a live session: checks the cursor, then the WebSocket handshake,
/// answers 101 and runs the session on its own task.
pub async fn handle(
    state: Arc<AppState>,
    mut request: Request,
    who: &crate::access::Principal,
) -> Response {
    let still_allowed = super::guard::still_allowed(&state, &request, who);
    let requested = match requested_cursor(&request) {
        Ok(cursor) => cursor,
        Err(error) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                format!("malformed cursor: {error}"),
            )
            .into_response();
        }
    };
    let accept = match accept_key(request.version(), request.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return refuse(refusal),
    };
    let Ok(permit) = Arc::clone(&state.live_permits).try_acquire_owned() else {
        let mut busy = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            format!(
                "the server already serves {} live sessions (--max-live-sessions); retry later",
                state.config.max_live_sessions
            ),
        )
        .into_response();
        busy.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        return busy;
    };
    let upgrade = hyper::upgrade::on(&mut request);
    state.sessions.clone().spawn(async move {
        // Held for the session's life.
        let _permit = permit;
        match upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(websocket_config()),
                )
                .await;
                let ctx = LiveContext {
                    store: Arc::clone(&state.store),
                    kafka: state.kafka.clone(),
                    kafka_timeout: state.config.kafka_timeout,
                    shutdown: state.shutdown.clone(),
                    replays: Arc::clone(&state.replays),
                    max_replay: state.config.max_replay,
                    still_allowed,
                    delivery: state.metrics.live_delivery.clone(),
                };
                Session::run(ctx, ws, requested).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });
    switching_protocols(&accept)
}

/// Checks the client's handshake (RFC 6455 section 4.2.1); returns `Sec-WebSocket-Accept`.
fn accept_key(version: Version, headers: &HeaderMap) -> Result<String, ApiError> {
    let required =
        |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "websocket_required", message);
    if !has_token(headers, &UPGRADE, "websocket") || !has_token(headers, &CONNECTION, "upgrade") {
        return Err(required(
            "GET /ws is a WebSocket endpoint: send `Upgrade: websocket` and `Connection: Upgrade`",
        ));
    }
    if version != Version::HTTP_11 {
        return Err(required("a WebSocket upgrade needs HTTP/1.1"));
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_version",
            "only WebSocket version 13 is supported (`Sec-WebSocket-Version: 13`)",
        ));
    }
    match headers.get(SEC_WEBSOCKET_KEY) {
        // Base64 of 16 bytes.
        Some(key) if key.len() == 24 => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(required(
            "`Sec-WebSocket-Key` is missing or not 16 bytes in base64",
        )),
    }
}

/// The answer to a refused handshake; a 426 names the version spoken (RFC 6455 4.4).
fn refuse(error: ApiError) -> Response {
    let upgrade_required = error.status == StatusCode::UPGRADE_REQUIRED;
    let mut response = error.into_response();
    if upgrade_required {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    response
}

/// Whether a comma-separated header holds `token` (case-insensitive), in any of its values.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn switching_protocols(accept: &str) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Bounded buffers: a client only ever sends pings and close frames, so a small read buffer
/// does; the write buffer holds at most a batch being written (frames are at most about 17
/// KiB, [`crate::messages::MAX_FRAME_DATA`]), and a client whose socket takes nothing is
/// dropped when the write times out.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn the_handshake_answers_the_rfc_example() {
        let accept = accept_key(Version::HTTP_11, &headers(&GOOD)).unwrap();
        // RFC 6455, section 1.3.
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let response = switching_protocols(&accept);
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_bad_handshake_is_refused() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            GOOD.iter().copied().filter(|(n, _)| *n != name).collect()
        };
        for missing in ["upgrade", "connection", "sec-websocket-key"] {
            let refused = accept_key(Version::HTTP_11, &headers(&without(missing))).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "without {missing}");
            assert_eq!(refused.code, "websocket_required");
        }
        let refused = accept_key(
            Version::HTTP_11,
            &headers(&without("sec-websocket-version")),
        );
        let response = refuse(refused.unwrap_err());
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
        let refused = accept_key(Version::HTTP_10, &headers(&GOOD)).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    }
}
