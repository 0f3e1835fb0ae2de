//! Reading requests: the JSON body (bounded), the query string, and the write options every
//! POST honours (`Idempotency-Key`, `?wait=true`).

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use serde_json::value::RawValue;

use super::{ApiError, Request};
use crate::domain::validation::{self, Listing};
use crate::model::query::{Cursor, ListQuery};
use crate::shop::{Idempotency, WriteOptions, fingerprint};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The one query-string parser: the parameters of `uri`, percent-decoded (a name given twice
/// keeps its last value).
pub fn parse_query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Whether a `Content-Type` says JSON: `application/json` or `application/<anything>+json`,
/// with any parameters (`; charset=utf-8`).
pub fn is_json_content_type(value: Option<&hyper::header::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// The query parameters of a request.
pub fn query_params(request: &Request) -> HashMap<String, String> {
    parse_query(request.uri())
}

/// Reads the body as one JSON value, kept as its text (numbers exactly as sent): `{}` when
/// empty, 413 past [`MAX_BODY_BYTES`], 408 when it takes longer than `within` to arrive (a
/// client dripping one byte at a time cannot hold the connection), 415 when a body comes
/// without a JSON content type (a form or `text/plain` body is how another site's page posts
/// without asking), 400 when it is not JSON.
pub async fn json_body(
    request: Request,
    within: std::time::Duration,
) -> Result<(Box<RawValue>, RequestParts), ApiError> {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(within, Limited::new(body, MAX_BODY_BYTES).collect()).await;
    let bytes: Bytes = match read {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {within:?}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {} KiB", MAX_BODY_BYTES / 1024),
            ));
        }
        Ok(Err(error)) => {
            return Err(ApiError::bad_request(
                "unreadable_body",
                format!("cannot read the body: {error}"),
            ));
        }
    };
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    if !empty && !is_json_content_type(parts.headers.get(hyper::header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a body must be JSON, sent with `Content-Type: application/json`",
        ));
    }
    let depth = crate::domain::json::nesting_depth(&bytes, crate::domain::json::MAX_DEPTH);
    if depth > crate::domain::json::MAX_DEPTH {
        return Err(ApiError::bad_request(
            "invalid_json",
            format!(
                "the body nests more than {} levels deep",
                crate::domain::json::MAX_DEPTH
            ),
        ));
    }
    let value = if empty {
        RawValue::from_string("{}".to_owned()).expect("{} is JSON")
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?
    };
    Ok((value, RequestParts { parts }))
}

/// What is left of a request once its body was read.
pub struct RequestParts {
    parts: hyper::http::request::Parts,
}

impl RequestParts {
    /// `Idempotency-Key` (with the request's fingerprint) and `?wait=true`, checked by
    /// [`validation`]. Keys are scoped to the client's token: two clients using the same key
    /// never see each other's answers.
    pub fn write_options(
        &self,
        body: &RawValue,
        who: &crate::access::Principal,
    ) -> Result<WriteOptions, ApiError> {
        let idempotency = match self.parts.headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = validation::idempotency_key(value.as_bytes())
                    .map_err(|e| ApiError::bad_request("invalid_idempotency_key", e.to_string()))?;
                let scope = who.idempotency_scope();
                Some(Idempotency {
                    key: if scope.is_empty() {
                        key.to_string()
                    } else {
                        format!("{scope}/{key}")
                    },
                    fingerprint: fingerprint(
                        self.parts.method.as_str(),
                        self.parts.uri.path(),
                        body,
                    ),
                })
            }
        };
        let wait_visible = validation::wait_param(self.query().get("wait").map(String::as_str))
            .map_err(|e| ApiError::bad_request("invalid_query", e.0))?;
        let traceparent = self
            .parts
            .extensions
            .get::<crate::telemetry::RequestContext>()
            .map(|context| context.trace.header());
        Ok(WriteOptions {
            idempotency,
            wait_visible,
            traceparent,
        })
    }

    fn query(&self) -> HashMap<String, String> {
        parse_query(&self.parts.uri)
    }
}

/// `status`, `q`, `limit` and `cursor` of a listing of `listing`, checked by [`validation`].
pub fn list_query(
    params: &HashMap<String, String>,
    listing: Listing,
) -> Result<ListQuery, ApiError> {
    let params = validation::list_params(params, listing, Cursor::decode)
        .map_err(|e| ApiError::bad_request("invalid_query", e.0))?;
    Ok(ListQuery {
        status: params.status.map(str::to_string),
        text: params.text,
        limit: params.limit,
        before: params.before,
    })
}
