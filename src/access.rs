//! Who may do what: roles, tokens, session cookies, and the rules that keep other sites and
//! other hosts out. Pure logic: [`Access::decide`] takes what a request says about itself and
//! answers with the [`Principal`] it acts as, or the [`Refusal`]; the HTTP layer only reads the
//! headers and turns a refusal into its 401/403.
//!
//! - **Tokens with roles.** `SHOPSTREAM_TOKENS` (`role:token,role:token`) and `--tokens-file`
//!   (one `role:token` a line) give each token one [`Role`]. Once any token is configured,
//!   every request needs one (loopback too), as a bearer token or as the session cookie the
//!   dashboard's sign-in exchanges a token for. Tokens are compared in constant time (their
//!   SHA-256 digests, so not even their length leaks) and never logged.
//! - **Safe by default.** With no token configured, only loopback clients are served (as
//!   Redis's protected mode does), and only under a loopback host name, so that a web page whose
//!   DNS name is rebound to 127.0.0.1 cannot use a browser as its proxy. `--allow-unauthenticated`
//!   opts out, for a trusted network.
//! - **Cross-site rules.** A request that carries an `Origin` must come from this server's own
//!   origin (or one of `--allowed-origins`). A request authenticated by the cookie must prove
//!   it comes from the dashboard itself: writes and WebSocket upgrades carry a matching
//!   `Origin`; reads come same-origin (`Sec-Fetch-Site`), and the cookie is `SameSite=Strict`.
//!   Bearer clients without an `Origin` (curl, a shop's backend) are served.
//! - **Session cookies are stateless.** A cookie names its token by a public id (a digest
//!   prefix), its role, expiry and a nonce, signed with HMAC-SHA256 keyed by the token: it
//!   survives restarts, works on every instance that has the token, and dies with the token.
//!   Signing out revokes its nonce in a bounded in-memory set until it expires.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie the dashboard's sign-in sets.
pub const SESSION_COOKIE: &str = "shopstream_session";
/// How long a session cookie is valid.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted.
const MAX_TOKEN_LEN: usize = 512;
/// Signed-out sessions remembered until they expire; the oldest go first past this.
const MAX_REVOKED: usize = 10_000;
/// The version tag of the cookie's format.
const COOKIE_VERSION: &str = "v1";

/// What a token may do. `Viewer` < `Client` < `Admin`; `Metrics` may read `/metrics` only,
/// so that a Prometheus scraper never holds a token that can do more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Metrics,
    Viewer,
    Client,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Metrics, Role::Viewer, Role::Client, Role::Admin];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Metrics => "metrics",
            Role::Viewer => "viewer",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may use a route that needs `needed`.
    pub fn may(self, needed: Needed) -> bool {
        match needed {
            Needed::Probe | Needed::Public => true,
            Needed::Metrics => matches!(self, Role::Metrics | Role::Admin),
            Needed::Viewer => matches!(self, Role::Viewer | Role::Client | Role::Admin),
            Needed::Client => matches!(self, Role::Client | Role::Admin),
            Needed::Admin => self == Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The least a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// `/healthz`, `/readyz`: open to everyone, always (container and Kubernetes probes); they
    /// reveal nothing private.
    Probe,
    /// The dashboard's files and its sign-in: no credentials, but the host, protected-mode
    /// and cross-site rules apply.
    Public,
    Metrics,
    Viewer,
    Client,
    Admin,
}

impl Needed {
    /// The role named in a refusal.
    pub fn role_name(self) -> &'static str {
        match self {
            Needed::Probe | Needed::Public => "none",
            Needed::Metrics => "metrics (or admin)",
            Needed::Viewer => "viewer",
            Needed::Client => "client",
            Needed::Admin => "admin",
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// No token is configured: a loopback client (or any client, with
    /// `--allow-unauthenticated`).
    Anonymous,
    Bearer,
    Cookie,
    /// Nothing, on a route that needs nothing.
    None,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` only on public routes asked without credentials.
    pub role: Option<Role>,
    pub via: Via,
    /// The token's public id (`None` when anonymous): it scopes idempotency keys, so that two
    /// clients never see each other's answers.
    pub token_id: Option<String>,
}

impl Principal {
    fn anonymous() -> Self {
        Self {
            role: Some(Role::Admin),
            via: Via::Anonymous,
            token_id: None,
        }
    }

    /// The scope of this client's idempotency keys: empty when anonymous (every anonymous
    /// client shares one scope, as before tokens existed).
    pub fn idempotency_scope(&self) -> &str {
        self.token_id.as_deref().unwrap_or("")
    }
}

/// Why a request is refused, before any handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token configured and the client is not on loopback.
    ProtectedMode { peer: IpAddr },
    /// The `Host` is not one this server answers to.
    HostNotAllowed { host: String },
    /// The `Origin` is another site.
    CrossOrigin { origin: String },
    /// A cookie-authenticated write or upgrade without an `Origin`, or a read that says it
    /// comes from another site.
    NotSameOrigin,
    /// A token in the query string (`?token=`, `?access_token=`): never accepted there.
    TokenInQuery,
    /// No credentials.
    Unauthenticated,
    /// A bearer token that is not configured, or a malformed `Authorization`.
    InvalidToken,
    /// A session cookie that is forged, expired, signed out or of a removed token.
    InvalidSession,
    /// Authenticated, but the role may not use the route.
    Forbidden { role: Role, needed: Needed },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ProtectedMode { peer } => write!(
                f,
                "shopstream runs in protected mode: no access token is configured, so only \
                 clients on this machine (loopback) are served, and {peer} is not one. Configure \
                 tokens (SHOPSTREAM_TOKENS=\"admin:<token>,viewer:<token>\" or --tokens-file) and \
                 send `Authorization: Bearer <token>`, or, on a trusted network only, start \
                 shopstream with --allow-unauthenticated"
            ),
            Refusal::HostNotAllowed { host } => write!(
                f,
                "this server does not answer to the host {host:?}; without tokens it answers \
                 only to loopback names (localhost, 127.0.0.1, [::1]); add the name to \
                 --allowed-hosts"
            ),
            Refusal::CrossOrigin { origin } => write!(
                f,
                "requests from the origin {origin:?} are not allowed (only this server's own \
                 origin and --allowed-origins are)"
            ),
            Refusal::NotSameOrigin => f.write_str(
                "a request signed in with the session cookie must come from the dashboard \
                 itself (a matching Origin header); scripts and servers send \
                 `Authorization: Bearer <token>` instead",
            ),
            Refusal::TokenInQuery => f.write_str(
                "tokens are never accepted in the query string (it ends up in logs and \
                 histories): send `Authorization: Bearer <token>`",
            ),
            Refusal::Unauthenticated => f.write_str(
                "this route needs an access token: send `Authorization: Bearer <token>`, or \
                 sign in on the dashboard",
            ),
            Refusal::InvalidToken => f.write_str(
                "the access token is not valid (send `Authorization: Bearer <token>` with a \
                 configured token)",
            ),
            Refusal::InvalidSession => {
                f.write_str("the session has expired or was signed out: sign in again")
            }
            Refusal::Forbidden { role, needed } => write!(
                f,
                "this route needs the {} role; the token has the {role} role",
                needed.role_name()
            ),
        }
    }
}

impl Refusal {
    /// The error code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::ProtectedMode { .. } => "protected_mode",
            Refusal::HostNotAllowed { .. } => "host_not_allowed",
            Refusal::CrossOrigin { .. } => "cross_origin",
            Refusal::NotSameOrigin => "not_same_origin",
            Refusal::TokenInQuery => "token_in_query",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::InvalidToken => "invalid_token",
            Refusal::InvalidSession => "invalid_session",
            Refusal::Forbidden { .. } => "forbidden",
        }
    }

    /// 401 when credentials are missing or wrong (the client can fix that by signing in), 400
    /// for a token in the query, 403 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unauthenticated | Refusal::InvalidToken | Refusal::InvalidSession => 401,
            Refusal::TokenInQuery => 400,
            _ => 403,
        }
    }
}

/// Why the configured tokens cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "{source_name}, entry {entry}: expected `role:token` with a role of metrics, viewer, client or admin"
    )]
    Malformed { source_name: String, entry: usize },
    #[error(
        "{source_name}, entry {entry}: unknown role `{role}` (metrics, viewer, client or admin)"
    )]
    UnknownRole {
        source_name: String,
        entry: usize,
        role: String,
    },
    #[error(
        "{source_name}, entry {entry}: a token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} visible \
         ASCII characters without spaces or commas (generate one with `head -c 32 /dev/urandom | base64`)"
    )]
    BadToken { source_name: String, entry: usize },
    #[error("{source_name}, entry {entry}: this token is already configured")]
    Duplicate { source_name: String, entry: usize },
    #[error("cannot read the tokens file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "--allow-unauthenticated serves everyone without a token, but tokens are configured: \
         use one or the other"
    )]
    OpenWithTokens,
}

/// One configured token.
struct Token {
    role: Role,
    /// SHA-256 of the token: what requests are compared with.
    digest: [u8; 32],
    /// Public id: the first 8 bytes of the digest in hex.
    id: String,
    /// The key of its session cookies' signatures.
    cookie_key: [u8; 32],
}

impl fmt::Debug for Token {
    // Never prints the token or anything derived from it but its public id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}, {})", self.role, self.id)
    }
}

/// The access rules of one server.
#[derive(Debug)]
pub struct Access {
    tokens: Vec<Token>,
    allow_unauthenticated: bool,
    /// Exact origins (`scheme://host[:port]`, lower case) allowed beside the server's own.
    allowed_origins: Vec<String>,
    /// Host names (or `host:port`), lower case; empty: any host when tokens are configured,
    /// loopback names when not.
    allowed_hosts: Vec<String>,
    /// Signed-out session nonces and when their cookies expire (seconds since 1970).
    revoked: Mutex<HashMap<String, u64>>,
    /// Where they are kept across restarts.
    signed_out_file: Option<std::path::PathBuf>,
}

/// What a request says about itself, as [`Access::decide`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub needed: Needed,
    /// GET, HEAD or OPTIONS: reads that change nothing.
    pub safe_method: bool,
    pub websocket: bool,
    pub peer: IpAddr,
    /// `Host` (or HTTP/2's `:authority`).
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub authorization: Option<&'a str>,
    /// The value of our cookie, if the request sent it.
    pub session_cookie: Option<&'a str>,
    /// The query string names a token parameter.
    pub token_in_query: bool,
}

/// The settings [`Access`] is built from.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// `role:token` pairs, comma separated (`SHOPSTREAM_TOKENS`).
    pub tokens: Option<String>,
    pub tokens_file: Option<std::path::PathBuf>,
    pub allow_unauthenticated: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    /// Where signed-out sessions are kept, so that a restart keeps refusing them (the data
    /// dir's `signed-out-sessions`); `None` keeps them in memory only.
    pub signed_out_file: Option<std::path::PathBuf>,
}

impl Access {
    pub fn new(settings: &AccessSettings) -> Result<Self, TokenError> {
        let mut entries: Vec<(String, usize, String)> = Vec::new();
        if let Some(list) = &settings.tokens {
            for (i, entry) in list.split(',').enumerate() {
                let entry = entry.trim();
                if !entry.is_empty() {
                    entries.push(("SHOPSTREAM_TOKENS".into(), i + 1, entry.to_string()));
                }
            }
        }
        if let Some(path) = &settings.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|e| TokenError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let name = format!("tokens file {}", path.display());
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    entries.push((name.clone(), i + 1, line.to_string()));
                }
            }
        }
        let mut tokens: Vec<Token> = Vec::new();
        for (source_name, entry, text) in entries {
            let (role, token) = text.split_once(':').ok_or_else(|| TokenError::Malformed {
                source_name: source_name.clone(),
                entry,
            })?;
            let role = Role::parse(role.trim()).ok_or_else(|| TokenError::UnknownRole {
                source_name: source_name.clone(),
                entry,
                role: role.trim().to_string(),
            })?;
            let token = token.trim();
            if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len())
                || !token.bytes().all(|b| b.is_ascii_graphic() && b != b',')
            {
                return Err(TokenError::BadToken { source_name, entry });
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if tokens.iter().any(|t| t.digest == digest) {
                return Err(TokenError::Duplicate { source_name, entry });
            }
            let cookie_key: [u8; 32] = Sha256::new()
                .chain_update(b"shopstream session cookie key\0")
                .chain_update(token.as_bytes())
                .finalize()
                .into();
            tokens.push(Token {
                role,
                id: hex(&digest[..8]),
                digest,
                cookie_key,
            });
        }
        if settings.allow_unauthenticated && !tokens.is_empty() {
            return Err(TokenError::OpenWithTokens);
        }
        Ok(Self {
            tokens,
            allow_unauthenticated: settings.allow_unauthenticated,
            allowed_origins: settings
                .allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
            allowed_hosts: settings
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            revoked: Mutex::new(load_signed_out(settings.signed_out_file.as_deref())),
            signed_out_file: settings.signed_out_file.clone(),
        })
    }

    /// Whether clients must present a token.
    pub fn tokens_required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// How this server authenticates, as the dashboard is told: `tokens`, `loopback`
    /// (protected mode) or `open` (`--allow-unauthenticated`).
    pub fn mode(&self) -> &'static str {
        if self.tokens_required() {
            "tokens"
        } else if self.allow_unauthenticated {
            "open"
        } else {
            "loopback"
        }
    }

    /// How many tokens of each role are configured (for the start-up log; never the tokens).
    pub fn summary(&self) -> String {
        Role::ALL
            .iter()
            .map(|r| {
                let n = self.tokens.iter().filter(|t| t.role == *r).count();
                format!("{r}: {n}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Who the request acts as, or why it is refused. Checks in order: probes pass; protected
    /// mode; host; token in the query; origin; credentials; same-origin proof for the cookie;
    /// role.
    pub fn decide(&self, facts: &RequestFacts<'_>, now: SystemTime) -> Result<Principal, Refusal> {
        if facts.needed == Needed::Probe {
            return Ok(Principal {
                role: None,
                via: Via::None,
                token_id: None,
            });
        }
        let anonymous = !self.tokens_required();
        if anonymous && !self.allow_unauthenticated && !is_loopback(facts.peer) {
            return Err(Refusal::ProtectedMode { peer: facts.peer });
        }
        if let Some(host) = facts.host
            && !self.host_allowed(host, anonymous && !self.allow_unauthenticated)
        {
            return Err(Refusal::HostNotAllowed {
                host: printable(host),
            });
        }
        if facts.token_in_query {
            return Err(Refusal::TokenInQuery);
        }
        if let Some(origin) = facts.origin
            && !self.origin_allowed(origin, facts.host)
        {
            return Err(Refusal::CrossOrigin {
                origin: printable(origin),
            });
        }
        let principal = if anonymous {
            Principal::anonymous()
        } else if let Some(authorization) = facts.authorization {
            self.bearer(authorization).ok_or(Refusal::InvalidToken)?
        } else if let Some(cookie) = facts.session_cookie {
            match self.session(cookie, now) {
                Some(principal) => principal,
                // The sign-in page must stay reachable with a stale cookie.
                None if facts.needed == Needed::Public => return Ok(nobody()),
                None => return Err(Refusal::InvalidSession),
            }
        } else if facts.needed == Needed::Public {
            return Ok(nobody());
        } else {
            return Err(Refusal::Unauthenticated);
        };
        if principal.via == Via::Cookie {
            // The cookie is sent by the browser whatever page asks: the request must show it
            // comes from the dashboard itself. Origin (when present) was matched above.
            let same_site = matches!(facts.sec_fetch_site, None | Some("same-origin" | "none"));
            let proven = if facts.safe_method && !facts.websocket {
                facts.origin.is_some() || same_site
            } else {
                facts.origin.is_some()
            };
            if !proven {
                return Err(Refusal::NotSameOrigin);
            }
        }
        match principal.role {
            Some(role) if !role.may(facts.needed) => Err(Refusal::Forbidden {
                role,
                needed: facts.needed,
            }),
            _ => Ok(principal),
        }
    }

    /// The principal of `Authorization: Bearer <token>`, if the token is configured.
    fn bearer(&self, authorization: &str) -> Option<Principal> {
        let (scheme, token) = authorization.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = self.token(token.trim())?;
        Some(Principal {
            role: Some(token.role),
            via: Via::Bearer,
            token_id: Some(token.id.clone()),
        })
    }

    /// The configured token equal to `presented`: every configured digest is compared, in
    /// constant time, whatever matches.
    fn token(&self, presented: &str) -> Option<&Token> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        found
    }

    /// Signs a session for the holder of `presented`: the cookie's value and its role, or
    /// `None` when the token is not configured.
    pub fn sign_in(&self, presented: &str, now: SystemTime) -> Option<(String, Role)> {
        let token = self.token(presented.trim())?;
        let expires = unix(now) + SESSION_LIFETIME.as_secs();
        let nonce: [u8; 16] = rand::random();
        let payload = format!(
            "{COOKIE_VERSION}.{}.{}.{expires}.{}",
            token.role,
            token.id,
            B64.encode(nonce)
        );
        let mac = sign(&token.cookie_key, &payload);
        Some((format!("{payload}.{mac}"), token.role))
    }

    /// The principal of a session cookie: signed by a configured token of the same role, not
    /// expired, not signed out.
    fn session(&self, cookie: &str, now: SystemTime) -> Option<Principal> {
        let parsed = ParsedCookie::parse(cookie)?;
        let token = self.tokens.iter().find(|t| t.id == parsed.token_id)?;
        let expected = sign(&token.cookie_key, parsed.payload);
        if !bool::from(expected.as_bytes().ct_eq(parsed.mac.as_bytes()))
            || token.role.as_str() != parsed.role
            || parsed.expires <= unix(now)
            || self.is_revoked(parsed.nonce)
        {
            return None;
        }
        Some(Principal {
            role: Some(token.role),
            via: Via::Cookie,
            token_id: Some(token.id.clone()),
        })
    }

    /// Whether a session cookie still stands: signed by a configured token, not expired, not
    /// signed out.
    pub fn session_valid(&self, cookie: &str, now: SystemTime) -> bool {
        self.session(cookie, now).is_some()
    }

    /// Signs a session out: its cookie is refused from now on (by this instance; other
    /// instances refuse it once it expires).
    pub fn sign_out(&self, cookie: &str, now: SystemTime) {
        let Some(parsed) = ParsedCookie::parse(cookie) else {
            return;
        };
        if self.session(cookie, now).is_none() {
            return;
        }
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if revoked.len() >= MAX_REVOKED {
            let now = unix(now);
            revoked.retain(|_, expires| *expires > now);
        }
        if revoked.len() >= MAX_REVOKED
            && let Some(soonest) = revoked
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(nonce, _)| nonce.clone())
        {
            revoked.remove(&soonest);
        }
        revoked.insert(parsed.nonce.to_string(), parsed.expires);
        if let Some(path) = &self.signed_out_file
            && let Err(error) = save_signed_out(path, &revoked)
        {
            tracing::warn!(path = %path.display(), %error, "cannot keep the signed-out sessions; a restart forgets them");
        }
    }

    fn is_revoked(&self, nonce: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(nonce)
    }

    /// Whether the server answers to `host` (`name[:port]`).
    fn host_allowed(&self, host: &str, loopback_only: bool) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = host_name(&host);
        if !self.allowed_hosts.is_empty()
            && self
                .allowed_hosts
                .iter()
                .any(|allowed| *allowed == host || allowed == name)
        {
            return true;
        }
        if loopback_only {
            return is_loopback_name(name);
        }
        self.allowed_hosts.is_empty()
    }

    /// Whether `origin` is this server's own (same authority as `host`, over http or https)
    /// or one of the allowed origins. `null` (sandboxed frames, files) never is.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let Some(authority) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        host.is_some_and(|host| {
            let host = host.trim().to_ascii_lowercase();
            authority == host
                || with_default_port(authority, &origin) == with_default_port(&host, &origin)
        })
    }
}

/// The signed-out sessions kept in `path` (`nonce expires` lines), the expired ones left out.
fn load_signed_out(path: Option<&Path>) -> HashMap<String, u64> {
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return HashMap::new();
    };
    let now = unix(SystemTime::now());
    text.lines()
        .filter_map(|line| {
            let (nonce, expires) = line.split_once(' ')?;
            let expires: u64 = expires.trim().parse().ok()?;
            (expires > now && nonce.len() <= 64).then(|| (nonce.to_string(), expires))
        })
        .take(MAX_REVOKED)
        .collect()
}

/// Writes the signed-out sessions whole (a new file renamed over the old: never half
/// written). At most [`MAX_REVOKED`] short lines.
fn save_signed_out(path: &Path, revoked: &HashMap<String, u64>) -> std::io::Result<()> {
    use std::fmt::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = String::with_capacity(revoked.len() * 40);
    for (nonce, expires) in revoked {
        let _ = writeln!(text, "{nonce} {expires}");
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(partial, path)
}

/// A principal without credentials, on a route that needs none.
fn nobody() -> Principal {
    Principal {
        role: None,
        via: Via::None,
        token_id: None,
    }
}

/// `host` with the scheme's default port made explicit, so that `example.com` and
/// `example.com:443` compare equal under `https`.
fn with_default_port(host: &str, origin: &str) -> String {
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        && !host.ends_with(']');
    if has_port {
        host.to_string()
    } else if origin.starts_with("https://") {
        format!("{host}:443")
    } else {
        format!("{host}:80")
    }
}

/// The name part of `host[:port]` (an IPv6 literal keeps its brackets).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(name, _)| &host[..=name.len()]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// Names that can only mean this machine.
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    literal.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// 127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A client-sent value for an error message: at most 100 visible characters.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

struct ParsedCookie<'a> {
    /// Everything the signature covers.
    payload: &'a str,
    role: &'a str,
    token_id: &'a str,
    expires: u64,
    nonce: &'a str,
    mac: &'a str,
}

impl<'a> ParsedCookie<'a> {
    fn parse(cookie: &'a str) -> Option<Self> {
        if cookie.len() > 512 {
            return None;
        }
        let (payload, mac) = cookie.rsplit_once('.')?;
        let mut parts = payload.split('.');
        let (version, role, token_id, expires, nonce) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if version != COOKIE_VERSION || parts.next().is_some() {
            return None;
        }
        Some(Self {
            payload,
            role,
            token_id,
            expires: expires.parse().ok()?,
            nonce,
            mac,
        })
    }
}

fn sign(key: &[u8; 32], payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(payload.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the tokens file's permissions: a file others can read is worth a warning.
pub fn world_readable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-token-0123456789";
    const VIEWER: &str = "viewer-token-0123456789";
    const CLIENT: &str = "client-token-0123456789";
    const METRICS: &str = "metrics-token-0123456789";

    fn with_tokens() -> Access {
        Access::new(&AccessSettings {
            tokens: Some(format!(
                "admin:{ADMIN}, viewer:{VIEWER},client:{CLIENT},metrics:{METRICS}"
            )),
            ..AccessSettings::default()
        })
        .unwrap()
    }

    fn anonymous() -> Access {
        Access::new(&AccessSettings::default()).unwrap()
    }

    fn loopback() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn facts(needed: Needed) -> RequestFacts<'static> {
        RequestFacts {
            needed,
            safe_method: true,
            websocket: false,
            peer: loopback(),
            host: Some("127.0.0.1:8080"),
            origin: None,
            sec_fetch_site: None,
            authorization: None,
            session_cookie: None,
            token_in_query: false,
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn roles_form_a_ladder_and_metrics_reads_only_metrics() {
        use Needed::*;
        let table = [
            (Role::Metrics, [true, true, true, false, false, false]),
            (Role::Viewer, [true, true, false, true, false, false]),
            (Role::Client, [true, true, false, true, true, false]),
            (Role::Admin, [true, true, true, true, true, true]),
        ];
        for (role, expected) in table {
            let got = [Probe, Public, Metrics, Viewer, Client, Admin].map(|n| role.may(n));
            assert_eq!(got, expected, "{role}");
        }
    }

    #[test]
    fn without_tokens_only_loopback_is_served_and_probes_always_are() {
        let access = anonymous();
        assert_eq!(access.mode(), "loopback");
        let mut remote = facts(Needed::Viewer);
        remote.peer = "192.0.2.7".parse().unwrap();
        remote.host = Some("shop.example:8080");
        let refused = access.decide(&remote, now()).unwrap_err();
        assert_eq!(refused, Refusal::ProtectedMode { peer: remote.peer });
        assert_eq!(refused.status(), 403);
        assert!(refused.to_string().contains("SHOPSTREAM_TOKENS"));
        assert!(refused.to_string().contains("--allow-unauthenticated"));
        remote.needed = Needed::Probe;
        assert!(access.decide(&remote, now()).is_ok());
        let local = access.decide(&facts(Needed::Admin), now()).unwrap();
        assert_eq!(local.role, Some(Role::Admin));
        assert_eq!(local.via, Via::Anonymous);
        let mut mapped = facts(Needed::Admin);
        mapped.peer = "::ffff:127.0.0.1".parse().unwrap();
        assert!(access.decide(&mapped, now()).is_ok());
    }

    #[test]
    fn opting_out_serves_everyone_and_cannot_be_mixed_with_tokens() {
        let open = Access::new(&AccessSettings {
            allow_unauthenticated: true,
            ..AccessSettings::default()
        })
        .unwrap();
        assert_eq!(open.mode(), "open");
        let mut remote = facts(Needed::Admin);
        remote.peer = "192.0.2.7".parse().unwrap();
        remote.host = Some("shop.internal:8080");
        assert!(open.decide(&remote, now()).is_ok());
        let mixed = Access::new(&AccessSettings {
            allow_unauthenticated: true,
            tokens: Some(format!("admin:{ADMIN}")),
            ..AccessSettings::default()
        });
        assert_eq!(mixed.unwrap_err(), TokenError::OpenWithTokens);
    }

    #[test]
    fn a_rebound_dns_name_cannot_reach_a_loopback_server() {
        let access = anonymous();
        for host in ["evil.example:8080", "evil.example", "10.0.0.1:8080"] {
            let mut f = facts(Needed::Viewer);
            f.host = Some(host);
            assert!(
                matches!(
                    access.decide(&f, now()),
                    Err(Refusal::HostNotAllowed { .. })
                ),
                "{host}"
            );
        }
        for host in [
            "localhost:8080",
            "app.localhost",
            "127.0.0.1",
            "[::1]:8080",
            "127.1.2.3:80",
        ] {
            let mut f = facts(Needed::Viewer);
            f.host = Some(host);
            assert!(access.decide(&f, now()).is_ok(), "{host}");
        }
        let listed = Access::new(&AccessSettings {
            allowed_hosts: vec!["shop.lan".into()],
            ..AccessSettings::default()
        })
        .unwrap();
        let mut f = facts(Needed::Viewer);
        f.host = Some("shop.lan:8080");
        assert!(listed.decide(&f, now()).is_ok());
    }

    #[test]
    fn with_an_allow_list_of_hosts_other_hosts_are_refused() {
        let access = Access::new(&AccessSettings {
            tokens: Some(format!("admin:{ADMIN}")),
            allowed_hosts: vec!["shop.example.com".into(), "127.0.0.1:8080".into()],
            ..AccessSettings::default()
        })
        .unwrap();
        let bearer = format!("Bearer {ADMIN}");
        let mut f = facts(Needed::Admin);
        f.authorization = Some(&bearer);
        for (host, ok) in [
            ("shop.example.com", true),
            ("SHOP.example.com:443", true),
            ("127.0.0.1:8080", true),
            ("127.0.0.1:9090", false),
            ("other.example.com", false),
        ] {
            f.host = Some(host);
            assert_eq!(access.decide(&f, now()).is_ok(), ok, "{host}");
        }
    }

    #[test]
    fn with_tokens_every_route_but_probes_and_public_ones_needs_one() {
        let access = with_tokens();
        assert_eq!(access.mode(), "tokens");
        assert_eq!(
            access.decide(&facts(Needed::Viewer), now()).unwrap_err(),
            Refusal::Unauthenticated
        );
        assert_eq!(
            access.decide(&facts(Needed::Public), now()).unwrap().role,
            None
        );
        let cases = [
            (ADMIN, Needed::Admin, true),
            (ADMIN, Needed::Metrics, true),
            (CLIENT, Needed::Client, true),
            (CLIENT, Needed::Viewer, true),
            (CLIENT, Needed::Admin, false),
            (VIEWER, Needed::Viewer, true),
            (VIEWER, Needed::Client, false),
            (METRICS, Needed::Metrics, true),
            (METRICS, Needed::Viewer, false),
        ];
        for (token, needed, ok) in cases {
            let bearer = format!("Bearer {token}");
            let mut f = facts(needed);
            f.authorization = Some(&bearer);
            let decided = access.decide(&f, now());
            assert_eq!(decided.is_ok(), ok, "{token} on {needed:?}");
            if !ok {
                assert!(matches!(decided, Err(Refusal::Forbidden { .. })));
            }
        }
        let mut f = facts(Needed::Viewer);
        f.authorization = Some("Bearer not-a-configured-token");
        assert_eq!(access.decide(&f, now()).unwrap_err(), Refusal::InvalidToken);
        f.authorization = Some("Basic YWRtaW46YWRtaW4=");
        assert_eq!(access.decide(&f, now()).unwrap_err(), Refusal::InvalidToken);
        let mut f = facts(Needed::Viewer);
        f.token_in_query = true;
        assert_eq!(access.decide(&f, now()).unwrap_err(), Refusal::TokenInQuery);
    }

    #[test]
    fn bad_token_configuration_is_explained() {
        let bad = |tokens: &str| {
            Access::new(&AccessSettings {
                tokens: Some(tokens.into()),
                ..AccessSettings::default()
            })
            .unwrap_err()
        };
        assert!(matches!(
            bad("admin"),
            TokenError::Malformed { entry: 1, .. }
        ));
        assert!(matches!(
            bad(&format!("root:{ADMIN}")),
            TokenError::UnknownRole { .. }
        ));
        assert!(matches!(bad("admin:short"), TokenError::BadToken { .. }));
        assert!(matches!(
            bad(&format!("admin:{ADMIN},viewer:{ADMIN}")),
            TokenError::Duplicate { entry: 2, .. }
        ));
        let message = bad("viewer:has a space in it!!").to_string();
        assert!(message.contains("SHOPSTREAM_TOKENS, entry 1"), "{message}");
        assert!(
            !message.contains("has a space"),
            "a message never repeats a token"
        );
    }

    #[test]
    fn tokens_come_from_a_file_too_and_debug_never_prints_them() {
        let dir = std::env::temp_dir().join(format!("shopstream-tokens-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(
            &file,
            format!("# the shop\nviewer:{VIEWER}\n\nmetrics:{METRICS}\n"),
        )
        .unwrap();
        let access = Access::new(&AccessSettings {
            tokens_file: Some(file.clone()),
            ..AccessSettings::default()
        })
        .unwrap();
        assert_eq!(
            access.summary(),
            "metrics: 1, viewer: 1, client: 0, admin: 0"
        );
        let printed = format!("{access:?}");
        assert!(
            !printed.contains(VIEWER) && !printed.contains(METRICS),
            "{printed}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = Access::new(&AccessSettings {
            tokens_file: Some(dir.join("gone")),
            ..AccessSettings::default()
        });
        assert!(matches!(missing, Err(TokenError::File { .. })));
    }

    #[test]
    fn origins_must_be_this_servers_own_or_allowed() {
        let access = Access::new(&AccessSettings {
            tokens: Some(format!("admin:{ADMIN}")),
            allowed_origins: vec!["https://ops.example.com/".into()],
            ..AccessSettings::default()
        })
        .unwrap();
        let bearer = format!("Bearer {ADMIN}");
        for (origin, host, ok) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080", true),
            ("https://shop.example.com", "shop.example.com", true),
            ("https://shop.example.com", "shop.example.com:443", true),
            ("http://shop.example.com:80", "shop.example.com", true),
            ("https://ops.example.com", "shop.example.com", true),
            ("https://evil.example", "127.0.0.1:8080", false),
            ("http://127.0.0.1:9999", "127.0.0.1:8080", false),
            ("null", "127.0.0.1:8080", false),
            ("file://", "127.0.0.1:8080", false),
        ] {
            let mut f = facts(Needed::Admin);
            f.authorization = Some(&bearer);
            f.origin = Some(origin);
            f.host = Some(host);
            assert_eq!(access.decide(&f, now()).is_ok(), ok, "{origin} on {host}");
        }
        // Anonymous loopback servers check origins too: a page elsewhere cannot post.
        let mut f = facts(Needed::Client);
        f.safe_method = false;
        f.origin = Some("https://evil.example");
        assert!(matches!(
            anonymous().decide(&f, now()),
            Err(Refusal::CrossOrigin { .. })
        ));
    }

    #[test]
    fn a_session_cookie_acts_as_its_token_until_it_expires_or_signs_out() {
        let access = with_tokens();
        let (cookie, role) = access.sign_in(CLIENT, now()).unwrap();
        assert_eq!(role, Role::Client);
        assert!(!cookie.contains(CLIENT));
        assert!(access.sign_in("wrong-token-0123456789", now()).is_none());
        let mut f = facts(Needed::Client);
        f.session_cookie = Some(&cookie);
        f.safe_method = false;
        f.origin = Some("http://127.0.0.1:8080");
        let principal = access.decide(&f, now()).unwrap();
        assert_eq!(principal.via, Via::Cookie);
        assert_eq!(principal.role, Some(Role::Client));
        // The same scope as the bearer token: idempotency keys are the token's.
        let bearer = format!("Bearer {CLIENT}");
        let mut b = facts(Needed::Client);
        b.authorization = Some(&bearer);
        assert_eq!(
            access.decide(&b, now()).unwrap().idempotency_scope(),
            principal.idempotency_scope()
        );
        // Expired.
        let later = now() + SESSION_LIFETIME + Duration::from_secs(1);
        assert_eq!(
            access.decide(&f, later).unwrap_err(),
            Refusal::InvalidSession
        );
        // Forged: another role, another signature, garbage.
        let forged = cookie.replace(".client.", ".admin.");
        f.session_cookie = Some(&forged);
        f.needed = Needed::Admin;
        assert_eq!(
            access.decide(&f, now()).unwrap_err(),
            Refusal::InvalidSession
        );
        // One character of the signature changed (to one it is not).
        let mut tampered = cookie.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        f.needed = Needed::Client;
        f.session_cookie = Some(&tampered);
        assert_eq!(
            access.decide(&f, now()).unwrap_err(),
            Refusal::InvalidSession
        );
        f.session_cookie = Some("v1.admin.x.1.y.z");
        assert_eq!(
            access.decide(&f, now()).unwrap_err(),
            Refusal::InvalidSession
        );
        // Signed out.
        f.session_cookie = Some(&cookie);
        assert!(access.decide(&f, now()).is_ok());
        access.sign_out(&cookie, now());
        assert_eq!(
            access.decide(&f, now()).unwrap_err(),
            Refusal::InvalidSession
        );
        // A stale cookie still reaches the sign-in page.
        f.needed = Needed::Public;
        assert_eq!(access.decide(&f, now()).unwrap().via, Via::None);
    }

    #[test]
    fn a_cookie_needs_proof_that_the_dashboard_itself_asks() {
        let access = with_tokens();
        let (cookie, _) = access.sign_in(ADMIN, now()).unwrap();
        let same = "http://127.0.0.1:8080";
        let mut write = facts(Needed::Client);
        write.safe_method = false;
        write.session_cookie = Some(&cookie);
        assert_eq!(
            access.decide(&write, now()).unwrap_err(),
            Refusal::NotSameOrigin
        );
        write.origin = Some(same);
        assert!(access.decide(&write, now()).is_ok());
        let mut upgrade = facts(Needed::Viewer);
        upgrade.websocket = true;
        upgrade.session_cookie = Some(&cookie);
        assert_eq!(
            access.decide(&upgrade, now()).unwrap_err(),
            Refusal::NotSameOrigin
        );
        upgrade.origin = Some(same);
        assert!(access.decide(&upgrade, now()).is_ok());
        let mut read = facts(Needed::Viewer);
        read.session_cookie = Some(&cookie);
        read.sec_fetch_site = Some("same-origin");
        assert!(access.decide(&read, now()).is_ok());
        read.sec_fetch_site = Some("cross-site");
        assert_eq!(
            access.decide(&read, now()).unwrap_err(),
            Refusal::NotSameOrigin
        );
        // A bearer client needs no Origin.
        let bearer = format!("Bearer {ADMIN}");
        let mut server = facts(Needed::Client);
        server.safe_method = false;
        server.authorization = Some(&bearer);
        assert!(access.decide(&server, now()).is_ok());
    }

    #[test]
    fn a_signed_out_session_stays_signed_out_after_a_restart() {
        let dir =
            std::env::temp_dir().join(format!("shopstream-signed-out-{}", uuid::Uuid::new_v4()));
        let settings = AccessSettings {
            tokens: Some(format!("viewer:{VIEWER}")),
            signed_out_file: Some(dir.join("signed-out-sessions")),
            ..AccessSettings::default()
        };
        let first = Access::new(&settings).unwrap();
        let (kept, _) = first.sign_in(VIEWER, SystemTime::now()).unwrap();
        let (gone, _) = first.sign_in(VIEWER, SystemTime::now()).unwrap();
        first.sign_out(&gone, SystemTime::now());
        let again = Access::new(&settings).unwrap();
        assert!(again.session_valid(&kept, SystemTime::now()));
        assert!(!again.session_valid(&gone, SystemTime::now()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_revoked_set_is_bounded() {
        let access = with_tokens();
        for _ in 0..(MAX_REVOKED + 10) {
            let (cookie, _) = access.sign_in(VIEWER, now()).unwrap();
            access.sign_out(&cookie, now());
        }
        assert_eq!(access.revoked.lock().unwrap().len(), MAX_REVOKED);
    }

    #[test]
    fn host_names_split_from_ports() {
        assert_eq!(host_name("example.com:8080"), "example.com");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert!(is_loopback_name("[::1]"));
        assert!(!is_loopback_name("localhost.evil.example"));
    }
}
