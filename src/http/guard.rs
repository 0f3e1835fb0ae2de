//! The HTTP side of [`crate::access`]: reads what a request says about itself, asks
//! [`Access::decide`](crate::access::Access::decide), and turns a refusal into its JSON 401
//! or 403. Also the dashboard's sign-in and sign-out (`/api/session`), and the security
//! headers every answer carries.

use std::net::SocketAddr;
use std::time::SystemTime;

use hyper::header::{
    AUTHORIZATION, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, ORIGIN, SET_COOKIE,
    WWW_AUTHENTICATE,
};
use hyper::{Method, StatusCode};

use super::request::json_body;
use super::{ApiError, Request, Response, json_response};
use crate::AppState;
use crate::access::{Needed, Principal, Refusal, RequestFacts, SESSION_COOKIE, SESSION_LIFETIME};
use crate::messages::api::{SessionView, SignedIn};

/// The dashboard loads only its own scripts, styles and images, talks only to its own server
/// (the API and the live stream), and is never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Query parameters that look like a token: refused, never read.
const TOKEN_PARAMETERS: [&str; 3] = ["token", "access_token", "api_key"];

/// Headers every answer carries: the pages' policy, no MIME sniffing, no framing, no referrer,
/// and no use of the answers by other sites' pages. Names and values are built at compile
/// time: every answer carries them, and building them per answer was 2% of a write's CPU.
static SECURITY_HEADERS: [(HeaderName, HeaderValue); 6] = [
    (
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    ),
    (
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ),
    (
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    ),
    (
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

/// Sets [`SECURITY_HEADERS`] on an answer.
pub fn security_headers(headers: &mut HeaderMap) {
    headers.reserve(SECURITY_HEADERS.len());
    for (name, value) in &SECURITY_HEADERS {
        // Clones of static bytes: no allocation.
        headers.insert(name.clone(), value.clone());
    }
}

/// Who the request acts as, or the answer that refuses it.
pub fn check(
    state: &AppState,
    request: &Request,
    peer: SocketAddr,
    needed: Needed,
    websocket: bool,
) -> Result<Principal, Box<Response>> {
    let headers = request.headers();
    if headers.get_all(HOST).iter().nth(1).is_some() {
        // RFC 9112, section 3.2: a request with more than one Host is refused.
        return Err(Box::new(
            ApiError::bad_request("invalid_host", "the request has more than one Host header")
                .into_response(),
        ));
    }
    let text = |name: HeaderName| -> Option<&str> {
        headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
    };
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| text(HOST));
    let token_in_query = request.uri().query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(name, _)| TOKEN_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()))
    });
    let cookie = session_cookie(headers);
    let facts = RequestFacts {
        needed,
        safe_method: matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        ),
        websocket,
        peer: peer.ip(),
        host,
        origin: text(ORIGIN),
        sec_fetch_site: text(HeaderName::from_static("sec-fetch-site")),
        authorization: text(AUTHORIZATION),
        session_cookie: cookie.as_deref(),
        token_in_query,
    };
    state
        .access
        .decide(&facts, SystemTime::now())
        .map_err(|refusal| Box::new(refused(&refusal)))
}

/// For a live session: whether its client may still watch. A session opened with the cookie
/// ends when the cookie is signed out or expires; bearer and anonymous ones hold for the
/// process's life (tokens are read at start).
pub fn still_allowed(
    state: &std::sync::Arc<AppState>,
    request: &Request,
    who: &Principal,
) -> std::sync::Arc<dyn Fn() -> bool + Send + Sync> {
    match (who.via, session_cookie(request.headers())) {
        (crate::access::Via::Cookie, Some(cookie)) => {
            let state = std::sync::Arc::clone(state);
            std::sync::Arc::new(move || state.access.session_valid(&cookie, SystemTime::now()))
        }
        _ => std::sync::Arc::new(|| true),
    }
}

/// The JSON answer to a refusal; a 401 names the scheme to use (`WWW-Authenticate`) and
/// clears a stale session cookie.
fn refused(refusal: &Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = ApiError::new(status, refusal.code(), refusal.to_string()).into_response();
    let headers = response.headers_mut();
    match refusal {
        Refusal::Unauthenticated => {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shopstream\""),
            );
        }
        Refusal::InvalidToken => {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shopstream\", error=\"invalid_token\""),
            );
        }
        Refusal::InvalidSession => {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shopstream\""),
            );
            headers.insert(SET_COOKIE, clear_cookie());
        }
        _ => {}
    }
    response
}

/// The value of the session cookie, from any `Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// `GET /api/session`: how this server authenticates and who the caller is.
pub fn session_view(state: &AppState, who: &Principal) -> Response {
    json_response(
        StatusCode::OK,
        &SessionView {
            mode: state.access.mode(),
            authenticated: who.role.is_some(),
            role: who.role,
            via: who.role.map(|_| who.via),
        },
    )
}

/// `POST /api/session {"token": "..."}`: exchanges a token for the session cookie
/// (`HttpOnly`, `SameSite=Strict`, `Secure` behind HTTPS), so that the dashboard's scripts never
/// hold the token.
pub async fn sign_in(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let https = request_is_https(&request) || state.config.secure_cookies;
    let (body, _) = json_body(request, state.config.body_timeout).await?;
    let token = crate::domain::validation::sign_in(&body)?;
    if !state.access.tokens_required() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "sign_in_not_needed",
            format!(
                "this server runs without tokens ({} mode): there is nothing to sign in to",
                state.access.mode()
            ),
        ));
    }
    let Some((cookie, role)) = state.access.sign_in(&token, SystemTime::now()) else {
        tracing::info!("a sign-in with an unknown token was refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "this token is not valid",
        ));
    };
    let mut response = json_response(StatusCode::OK, &SignedIn { role });
    let attributes = format!(
        "{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if https { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&attributes) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    Ok(response)
}

/// `DELETE /api/session`: signs the session out (its cookie is refused from now on) and
/// clears the cookie.
pub fn sign_out(state: &AppState, request: &Request) -> Response {
    if let Some(cookie) = session_cookie(request.headers()) {
        state.access.sign_out(&cookie, SystemTime::now());
    }
    let mut response = json_response(
        StatusCode::OK,
        &SessionView {
            mode: state.access.mode(),
            authenticated: false,
            role: None,
            via: None,
        },
    );
    response.headers_mut().insert(SET_COOKIE, clear_cookie());
    response
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("shopstream_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether the request reached us over HTTPS: through a TLS proxy that says so, or from a
/// page served over HTTPS.
fn request_is_https(request: &Request) -> bool {
    let headers = request.headers();
    let says = |name: &str, prefix: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with(prefix))
    };
    says("x-forwarded-proto", "https") || says("origin", "https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("theme=dark; other=1"));
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=b; shopstream_session=v1.x.y ; c=d"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("v1.x.y"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn every_answer_gets_the_security_headers() {
        let mut headers = HeaderMap::new();
        security_headers(&mut headers);
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
}
