//! Who may do what, end to end on the real broker: every route against no token, a wrong
//! token, each role and the dashboard's session cookie; sign-in and sign-out; idempotency keys
//! scoped per token; and, without tokens, the loopback-only rules (host names, origins).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestApp;
use support::http::{Reply, send};

const ADMIN: &str = "admin-7f3c9a1e5b2d4c6f8a0b";
const CLIENT: &str = "client-2b4d6f8a0c1e3a5c7e9f";
const VIEWER: &str = "viewer-9e8d7c6b5a4f3e2d1c0b";
const METRICS: &str = "metrics-1a2b3c4d5e6f7a8b9c0d";

/// The least role of every route, written down here independently of the server's table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Least {
    Open,
    /// No credentials needed (the API documents hold no data), but a wrong token is refused.
    Public,
    Metrics,
    Viewer,
    Client,
    Admin,
}

const ROUTES: &[(&str, &str, Least)] = &[
    ("GET", "/healthz", Least::Open),
    ("GET", "/readyz", Least::Open),
    ("GET", "/metrics", Least::Metrics),
    ("GET", "/ws", Least::Viewer),
    ("GET", "/api/orders", Least::Viewer),
    ("POST", "/api/orders", Least::Client),
    ("POST", "/api/orders/create", Least::Client),
    ("GET", "/api/orders/o-1", Least::Viewer),
    ("POST", "/api/orders/o-1/payments", Least::Client),
    ("POST", "/api/orders/o-1/cancel", Least::Client),
    ("POST", "/api/orders/o-1/deliveries", Least::Client),
    ("POST", "/api/payments", Least::Client),
    ("GET", "/api/payments", Least::Viewer),
    ("POST", "/api/deliveries", Least::Client),
    ("GET", "/api/deliveries", Least::Viewer),
    ("GET", "/api/deliveries/d-1", Least::Viewer),
    ("PATCH", "/api/deliveries/d-1", Least::Client),
    ("GET", "/api/stats", Least::Viewer),
    ("GET", "/api/rules", Least::Viewer),
    ("GET", "/api/kafka", Least::Viewer),
    (
        "GET",
        "/api/events?topic=orders&partition=0&offset=0&limit=1",
        Least::Admin,
    ),
    ("GET", "/api/simulator", Least::Viewer),
    ("POST", "/api/simulator", Least::Admin),
    ("POST", "/api/store/backup", Least::Admin),
    ("GET", "/api/openapi.json", Least::Public),
    ("GET", "/api/asyncapi.json", Least::Public),
];

fn may(role: &str, least: Least) -> bool {
    match least {
        Least::Open | Least::Public => true,
        Least::Metrics => matches!(role, "metrics" | "admin"),
        Least::Viewer => matches!(role, "viewer" | "client" | "admin"),
        Least::Client => matches!(role, "client" | "admin"),
        Least::Admin => role == "admin",
    }
}

async fn start_with_tokens(extra: &[&str]) -> (TestApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(support::unique_name("tokens"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(
        &file,
        format!("# shopstream's tokens\nadmin:{ADMIN}\nclient:{CLIENT}\nviewer:{VIEWER}\nmetrics:{METRICS}\n"),
    )
    .unwrap();
    let prefix = format!("{}.", support::unique_name("access"));
    let mut args = vec![
        "--topic-prefix",
        &prefix,
        "--tokens-file",
        support::path_str(&file),
    ];
    args.extend_from_slice(extra);
    let server = TestApp::start(&support::bootstrap(), &args).await;
    server.wait_ready(Duration::from_secs(60)).await;
    (server, dir)
}

/// A request with a JSON body (`{}` for writes, none for reads) and the given headers.
async fn call(server: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = headers.to_vec();
    let body = if method == "GET" {
        String::new()
    } else {
        all.push(("content-type", "application/json"));
        "{}".to_string()
    };
    send(server.addr, method, path, &all, body).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The cookie (`name=value`) a sign-in with `token` sets.
async fn sign_in(server: &TestApp, token: &str) -> String {
    let origin = server.url("");
    let signed = send(
        server.addr,
        "POST",
        "/api/session",
        &[
            ("content-type", "application/json"),
            ("origin", origin.trim_end_matches('/')),
        ],
        json!({ "token": token }).to_string(),
    )
    .await;
    assert_eq!(signed.status, 200, "{}", signed.json);
    let set_cookie = signed.headers["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert!(
        !set_cookie.contains(token),
        "the cookie never holds the token"
    );
    set_cookie.split(';').next().unwrap().to_string()
}

fn refused_as(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.json);
    assert_eq!(reply.json["error"]["code"], code, "{what}: {}", reply.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_readme_says() {
    let (server, dir) = start_with_tokens(&[]).await;
    let origin = server.url("");
    let origin = origin.trim_end_matches('/');
    let cookie = sign_in(&server, CLIENT).await;
    for &(method, path, least) in ROUTES {
        let what = format!("{method} {path}");
        // No credentials.
        let anonymous = call(&server, method, path, &[]).await;
        if matches!(least, Least::Open | Least::Public) {
            assert!(anonymous.status < 400, "{what}: {}", anonymous.json);
        } else {
            refused_as(&anonymous, 401, "unauthenticated", &what);
            assert_eq!(
                anonymous.headers["www-authenticate"], "Bearer realm=\"shopstream\"",
                "{what}"
            );
        }
        // A token nobody configured.
        let wrong = call(
            &server,
            method,
            path,
            &[("authorization", "Bearer not-a-real-token-000000")],
        )
        .await;
        if least == Least::Open {
            assert!(wrong.status < 400, "{what}: {}", wrong.json);
        } else {
            refused_as(&wrong, 401, "invalid_token", &what);
        }
        // Each role.
        for (role, token) in [
            ("metrics", METRICS),
            ("viewer", VIEWER),
            ("client", CLIENT),
            ("admin", ADMIN),
        ] {
            let header = bearer(token);
            let reply = call(&server, method, path, &[("authorization", &header)]).await;
            let what = format!("{what} as {role}");
            if may(role, least) {
                assert!(
                    ![401, 403].contains(&reply.status) && reply.status < 500,
                    "{what}: {} {}",
                    reply.status,
                    reply.json
                );
            } else {
                refused_as(&reply, 403, "forbidden", &what);
                let message = reply.json["error"]["message"].as_str().unwrap();
                assert!(message.contains(role), "{what}: {message}");
            }
        }
        // The session cookie of a client, from the dashboard (its Origin).
        let reply = call(
            &server,
            method,
            path,
            &[("cookie", &cookie), ("origin", origin)],
        )
        .await;
        let what = format!("{what} with a client's cookie");
        if may("client", least) {
            assert!(
                ![401, 403].contains(&reply.status),
                "{what}: {}",
                reply.json
            );
        } else {
            refused_as(&reply, 403, "forbidden", &what);
        }
    }
    // The probes tell nothing private.
    let ready = call(&server, "GET", "/readyz", &[]).await;
    assert!(ready.json.get("orders").is_none());
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_with_a_cookie_that_only_its_own_pages_can_use() {
    let (server, dir) = start_with_tokens(&[]).await;
    let origin = server.url("");
    let origin = origin.trim_end_matches('/');
    let session = call(&server, "GET", "/api/session", &[]).await;
    assert_eq!(session.status, 200);
    assert_eq!(session.json["mode"], "tokens");
    assert_eq!(session.json["authenticated"], false);
    // The pages load without credentials (they hold no data) and carry the policy.
    let page = call(&server, "GET", "/", &[]).await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    // A wrong token does not sign in.
    let wrong = send(
        server.addr,
        "POST",
        "/api/session",
        &[("content-type", "application/json"), ("origin", origin)],
        json!({"token": "not-a-real-token-000000"}).to_string(),
    )
    .await;
    refused_as(&wrong, 401, "invalid_token", "sign-in with a wrong token");
    // Nor can another site sign a visitor in (login CSRF).
    let foreign = send(
        server.addr,
        "POST",
        "/api/session",
        &[
            ("content-type", "application/json"),
            ("origin", "https://evil.example"),
        ],
        json!({"token": VIEWER}).to_string(),
    )
    .await;
    refused_as(&foreign, 403, "cross_origin", "sign-in from another site");

    let cookie = sign_in(&server, VIEWER).await;
    let who = call(
        &server,
        "GET",
        "/api/session",
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(who.json["authenticated"], true, "{}", who.json);
    assert_eq!(who.json["role"], "viewer");
    assert_eq!(who.json["via"], "cookie");
    // Reads from the dashboard's own pages work.
    let list = call(
        &server,
        "GET",
        "/api/orders",
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.json);
    // The browser sends the cookie with another site's request too: refused.
    let cross = call(
        &server,
        "GET",
        "/api/orders",
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
    )
    .await;
    refused_as(
        &cross,
        403,
        "not_same_origin",
        "a cookie read from another site",
    );
    let cross = call(
        &server,
        "GET",
        "/api/orders",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    )
    .await;
    refused_as(
        &cross,
        403,
        "cross_origin",
        "a cookie read with a foreign Origin",
    );
    // A cookie write without an Origin is refused; a bearer write without one is served.
    let admin_cookie = sign_in(&server, ADMIN).await;
    let write = call(
        &server,
        "POST",
        "/api/simulator",
        &[("cookie", &admin_cookie)],
    )
    .await;
    refused_as(
        &write,
        403,
        "not_same_origin",
        "a cookie write without Origin",
    );
    let write = call(
        &server,
        "POST",
        "/api/simulator",
        &[("cookie", &admin_cookie), ("origin", origin)],
    )
    .await;
    assert_eq!(write.status, 200, "{}", write.json);
    let admin = bearer(ADMIN);
    let write = call(
        &server,
        "POST",
        "/api/simulator",
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(write.status, 200, "{}", write.json);
    // A WebSocket upgrade with the cookie needs the Origin too.
    let upgrade = [
        ("cookie", cookie.as_str()),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let ws = send(server.addr, "GET", "/ws", &upgrade, "").await;
    refused_as(
        &ws,
        403,
        "not_same_origin",
        "a cookie upgrade without Origin",
    );
    let mut with_origin = upgrade.to_vec();
    with_origin.push(("origin", "https://evil.example"));
    let ws = send(server.addr, "GET", "/ws", &with_origin, "").await;
    refused_as(&ws, 403, "cross_origin", "an upgrade from another site");
    // Signing out: the cookie is cleared and refused from then on.
    let out = send(
        server.addr,
        "DELETE",
        "/api/session",
        &[("cookie", &cookie), ("origin", origin)],
        "",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.json);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = call(
        &server,
        "GET",
        "/api/orders",
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
    )
    .await;
    refused_as(&after, 401, "invalid_session", "a signed-out cookie");
    assert!(
        after.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // A forged cookie is refused.
    let forged = cookie.replace("viewer", "admin");
    let reply = call(
        &server,
        "GET",
        "/api/events?topic=orders&partition=0&offset=0",
        &[("cookie", &forged), ("sec-fetch-site", "same-origin")],
    )
    .await;
    refused_as(&reply, 401, "invalid_session", "a forged cookie");
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_never_taken_from_the_query_and_secure_cookies_go_with_https() {
    let (server, dir) = start_with_tokens(&["--secure-cookies"]).await;
    let reply = call(&server, "GET", &format!("/api/orders?token={ADMIN}"), &[]).await;
    refused_as(&reply, 400, "token_in_query", "a token in the query");
    assert!(
        !String::from_utf8_lossy(&reply.raw).contains(ADMIN),
        "the answer never repeats a token"
    );
    let reply = call(&server, "GET", &format!("/ws?access_token={ADMIN}"), &[]).await;
    refused_as(
        &reply,
        400,
        "token_in_query",
        "a token in the WebSocket query",
    );
    let origin = server.url("");
    let signed = send(
        server.addr,
        "POST",
        "/api/session",
        &[
            ("content-type", "application/json"),
            ("origin", origin.trim_end_matches('/')),
        ],
        json!({"token": ADMIN}).to_string(),
    )
    .await;
    assert_eq!(signed.status, 200);
    assert!(
        signed.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_belong_to_the_token_that_used_them() {
    let (server, dir) = start_with_tokens(&[]).await;
    let order = json!({
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
        "product": "Analytical Engine",
        "amount": "99.00",
        "address": "12 St James's Square, London",
    });
    let post = |token: &'static str| {
        let body = order.to_string();
        let addr = server.addr;
        async move {
            let header = bearer(token);
            send(
                addr,
                "POST",
                "/api/orders",
                &[
                    ("authorization", &header),
                    ("content-type", "application/json"),
                    ("idempotency-key", "order-1"),
                ],
                body,
            )
            .await
        }
    };
    let first = post(CLIENT).await;
    assert_eq!(first.status, 201, "{}", first.json);
    let again = post(CLIENT).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        again.json["order"]["order_id"],
        first.json["order"]["order_id"]
    );
    // Another token with the same key is another request: a new order, not the first's answer.
    let other = post(ADMIN).await;
    assert_eq!(other.status, 201, "{}", other.json);
    assert!(other.headers.get("idempotent-replayed").is_none());
    assert_ne!(
        other.json["order"]["order_id"],
        first.json["order"]["order_id"]
    );
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_server_answers_only_to_loopback_names_and_its_own_pages() {
    let prefix = format!("{}.", support::unique_name("loopback"));
    let server = TestApp::start(&support::bootstrap(), &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;
    let session = call(&server, "GET", "/api/session", &[]).await;
    assert_eq!(session.json["mode"], "loopback");
    assert_eq!(session.json["role"], "admin");
    // A page whose DNS name was rebound to 127.0.0.1 reaches us under its own name.
    let rebound = call(
        &server,
        "GET",
        "/api/orders",
        &[("host", "evil.example:8080")],
    )
    .await;
    refused_as(&rebound, 403, "host_not_allowed", "a rebound DNS name");
    // The probes answer whatever the host.
    let probe = call(&server, "GET", "/healthz", &[("host", "10.1.2.3:8080")]).await;
    assert_eq!(probe.status, 200);
    // Another site's page cannot post through the visitor's browser, nor open the stream.
    let csrf = send(
        server.addr,
        "POST",
        "/api/orders/create",
        &[
            ("origin", "https://evil.example"),
            ("content-type", "text/plain"),
        ],
        "",
    )
    .await;
    refused_as(&csrf, 403, "cross_origin", "a cross-site simple request");
    let csrf = send(
        server.addr,
        "POST",
        "/api/simulator",
        &[("content-type", "text/plain")],
        r#"{"running":true,"rate":200}"#,
    )
    .await;
    refused_as(&csrf, 415, "unsupported_media_type", "a text/plain body");
    let form = send(
        server.addr,
        "POST",
        "/api/orders",
        &[("content-type", "application/x-www-form-urlencoded")],
        "customer_name=x",
    )
    .await;
    refused_as(&form, 415, "unsupported_media_type", "a form body");
    let json_suffix = send(
        server.addr,
        "POST",
        "/api/simulator",
        &[(
            "content-type",
            "application/merge-patch+json; charset=utf-8",
        )],
        "{}",
    )
    .await;
    assert_eq!(json_suffix.status, 200, "{}", json_suffix.json);
    let ws = send(
        server.addr,
        "GET",
        "/ws",
        &[
            ("origin", "http://evil.example"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "",
    )
    .await;
    refused_as(&ws, 403, "cross_origin", "a cross-site WebSocket");
    // Signing in is pointless here, and says so.
    let sign_in = send(
        server.addr,
        "POST",
        "/api/session",
        &[("content-type", "application/json")],
        json!({"token": ADMIN}).to_string(),
    )
    .await;
    refused_as(
        &sign_in,
        409,
        "sign_in_not_needed",
        "a sign-in without tokens",
    );
    let _: Value = session.json;
    server.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tokens_file_stops_the_start_with_the_reason() {
    let dir = std::env::temp_dir().join(support::unique_name("badtokens"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, "admin:short\n").unwrap();
    use clap::Parser;
    let config = shopstream::Config::try_parse_from([
        "shopstream",
        "--kafka",
        "127.0.0.1:1",
        "--data-dir",
        support::path_str(&dir.join("data")),
        "--tokens-file",
        support::path_str(&file),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        shopstream::serve(listener, config, tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("a bad tokens file stops the start at once");
    let message = stopped.unwrap_err().to_string();
    assert!(
        message.contains("entry 1") && message.contains("16"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_ends_when_its_cookie_is_signed_out() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let (server, dir) = start_with_tokens(&[]).await;
    let origin = server.url("");
    let origin = origin.trim_end_matches('/').to_string();
    let cookie = sign_in(&server, VIEWER).await;
    let mut request = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the cookie opens the stream");
    // Signed out from elsewhere (another tab): the session closes at its next ping (20 s).
    let out = send(
        server.addr,
        "DELETE",
        "/api/session",
        &[("cookie", &cookie), ("origin", &origin)],
        "",
    )
    .await;
    assert_eq!(out.status, 200);
    let closed = tokio::time::timeout(Duration::from_secs(40), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| (f.code, f.reason.to_string())),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the session ends within two pings");
    let (code, reason) = closed.expect("a close frame says why");
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("signed out"), "{reason}");
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}
