//! The hostile-input suite: what an attacker who reaches shopstream's port sends, drawn from
//! the findings of the edge-security review (numbered 1 to 9 below) and from the OWASP API
//! Security Top 10. Every case expects a 4xx (never a 5xx, never a hang: every exchange is
//! bounded) and then checks that the server still answers `/healthz`. Loopback only.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TestApp;
use support::http::{Reply, exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-hostile-0a1b2c3d4e5f";
const CLIENT: &str = "client-hostile-0a1b2c3d4e5f";
const VIEWER: &str = "viewer-hostile-0a1b2c3d4e5f";
const METRICS: &str = "metrics-hostile-0a1b2c3d4e5f";

/// One request and the answer expected of it.
struct Case {
    finding: &'static str,
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// The error code of the JSON answer, when the answer is shopstream's own (hyper answers
    /// some protocol errors itself, without a body).
    code: Option<&'static str>,
}

fn case(finding: &'static str, name: &'static str, method: &'static str, path: &str) -> Case {
    Case {
        finding,
        name,
        method,
        path: path.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        status: 400,
        code: None,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn token(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    fn json(self, body: Value) -> Self {
        self.header("content-type", "application/json")
            .raw(body.to_string())
    }
    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }
    fn expect_bare(mut self, status: u16) -> Self {
        self.status = status;
        self.code = None;
        self
    }
}

fn order() -> Value {
    json!({
        "customer_name": "Mallory Example",
        "customer_email": "mallory@example.com",
        "product": "Lock pick",
        "amount": "10.00",
        "address": "1 Attack Lane",
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut body = order();
    body[field] = value;
    body
}

const UPGRADE: [(&str, &str); 4] = [
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

fn upgrade(finding: &'static str, name: &'static str, path: &str) -> Case {
    let mut c = case(finding, name, "GET", path);
    for (k, v) in UPGRADE {
        c = c.header(k, v);
    }
    c
}

/// The cases a server with tokens answers (findings 1, 2, 5, 6, 7, 9 and the OWASP list).
fn with_tokens_cases() -> Vec<Case> {
    let flood: serde_json::Map<String, Value> =
        (0..5_500).map(|i| (format!("f{i:04}"), json!(1))).collect();
    let deep = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
    let mut big_chunked = case("5", "a chunked body over 64 KiB", "POST", "/api/orders")
        .token(CLIENT)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .expect(413, "payload_too_large");
    // hyper's client frames the body in chunks, as the header asks.
    big_chunked.body = vec![b' '; 70 * 1024];
    vec![
        // 1. Who may do what.
        case("1", "a write without a token", "POST", "/api/orders")
            .json(order())
            .expect(401, "unauthenticated"),
        case(
            "1",
            "the simulator without a token",
            "POST",
            "/api/simulator",
        )
        .json(json!({"running": true, "rate": 200}))
        .expect(401, "unauthenticated"),
        case(
            "1",
            "the raw event browser without a token",
            "GET",
            "/api/events?topic=orders&partition=0&offset=0",
        )
        .expect(401, "unauthenticated"),
        case(
            "1",
            "customers' orders without a token",
            "GET",
            "/api/orders",
        )
        .expect(401, "unauthenticated"),
        case("1", "metrics without a token", "GET", "/metrics").expect(401, "unauthenticated"),
        upgrade("1", "the live stream without a token", "/ws").expect(401, "unauthenticated"),
        case("1", "a wrong bearer token", "GET", "/api/orders")
            .token("not-a-token-at-all-000")
            .expect(401, "invalid_token"),
        case("1", "basic authentication", "GET", "/api/orders")
            .header("authorization", "Basic YWRtaW46YWRtaW4=")
            .expect(401, "invalid_token"),
        case("1", "an empty bearer token", "GET", "/api/orders")
            .header("authorization", "Bearer ")
            .expect(401, "invalid_token"),
        case("1", "a viewer places an order", "POST", "/api/orders")
            .token(VIEWER)
            .json(order())
            .expect(403, "forbidden"),
        case(
            "1",
            "a client starts the simulator",
            "POST",
            "/api/simulator",
        )
        .token(CLIENT)
        .json(json!({"running": true}))
        .expect(403, "forbidden"),
        case(
            "1",
            "a client reads raw records",
            "GET",
            "/api/events?topic=orders&partition=0&offset=0",
        )
        .token(CLIENT)
        .expect(403, "forbidden"),
        case("1", "a client takes a backup", "POST", "/api/store/backup")
            .token(CLIENT)
            .expect(403, "forbidden"),
        case("1", "the metrics token reads orders", "GET", "/api/orders")
            .token(METRICS)
            .expect(403, "forbidden"),
        upgrade("1", "the metrics token opens the live stream", "/ws")
            .token(METRICS)
            .expect(403, "forbidden"),
        case(
            "1",
            "a token in the query string",
            "GET",
            &format!("/api/orders?token={ADMIN}"),
        )
        .expect(400, "token_in_query"),
        case(
            "1",
            "an access_token in the WebSocket query",
            "GET",
            &format!("/ws?access_token={ADMIN}"),
        )
        .expect(400, "token_in_query"),
        case("1", "a forged session cookie", "GET", "/api/orders")
            .header(
                "cookie",
                "shopstream_session=v1.admin.0011223344556677.9999999999.AAAA.AAAA",
            )
            .header("sec-fetch-site", "same-origin")
            .expect(401, "invalid_session"),
        case("1", "a sign-in with a wrong token", "POST", "/api/session")
            .json(json!({"token": "not-a-token-at-all-000"}))
            .expect(401, "invalid_token"),
        case("1", "a sign-in with a 100 KB token", "POST", "/api/session")
            .json(json!({"token": "x".repeat(60_000)}))
            .expect(422, "validation_failed"),
        // 2. Other sites.
        upgrade("2", "cross-site WebSocket hijacking", "/ws")
            .token(VIEWER)
            .header("origin", "https://evil.example")
            .expect(403, "cross_origin"),
        case("2", "a write from another origin", "POST", "/api/orders")
            .token(CLIENT)
            .header("origin", "https://evil.example")
            .json(order())
            .expect(403, "cross_origin"),
        case(
            "2",
            "a sandboxed frame's null origin",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .header("origin", "null")
        .json(order())
        .expect(403, "cross_origin"),
        case("2", "a text/plain simple request", "POST", "/api/orders")
            .token(CLIENT)
            .header("content-type", "text/plain")
            .raw(order().to_string())
            .expect(415, "unsupported_media_type"),
        case("2", "a form post", "POST", "/api/simulator")
            .token(ADMIN)
            .header("content-type", "application/x-www-form-urlencoded")
            .raw("running=true")
            .expect(415, "unsupported_media_type"),
        case("2", "a body with no content type", "POST", "/api/orders")
            .token(CLIENT)
            .raw(order().to_string())
            .expect(415, "unsupported_media_type"),
        case("2", "two Host headers", "GET", "/api/orders")
            .token(VIEWER)
            .header("host", "127.0.0.1")
            .header("host", "evil.example")
            .expect(400, "invalid_host"),
        // 5. Amplified errors.
        case("5", "5,500 unknown fields", "POST", "/api/orders")
            .token(CLIENT)
            .json(Value::Object(flood))
            .expect(422, "validation_failed"),
        case(
            "5",
            "a field name of 50,000 characters",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .json(with(&"k".repeat(50_000), json!(1)))
        .expect(422, "validation_failed"),
        case("5", "a body over 64 KiB", "POST", "/api/orders")
            .token(CLIENT)
            .header("content-type", "application/json")
            .raw(vec![b' '; 65 * 1024])
            .expect(413, "payload_too_large"),
        big_chunked,
        case("5", "JSON nested 1,000 levels deep", "POST", "/api/orders")
            .token(CLIENT)
            .header("content-type", "application/json")
            .raw(deep)
            .expect(400, "invalid_json"),
        // 6. A bad query is the client's, not an outage.
        case(
            "6",
            "a time before 1970",
            "GET",
            "/api/events?topic=orders&partition=0&time=0001-01-01T00:00:00Z",
        )
        .token(ADMIN)
        .expect(400, "invalid_query"),
        case(
            "6",
            "a negative partition",
            "GET",
            "/api/events?topic=orders&partition=-1&offset=0",
        )
        .token(ADMIN)
        .expect(400, "invalid_query"),
        case(
            "6",
            "a partition far past the topic's",
            "GET",
            "/api/events?topic=orders&partition=99999&offset=0",
        )
        .token(ADMIN)
        .expect(400, "invalid_query"),
        case(
            "6",
            "an offset that is not a number",
            "GET",
            "/api/events?topic=orders&partition=0&offset=abc",
        )
        .token(ADMIN)
        .expect(400, "invalid_query"),
        case(
            "6",
            "an unknown topic",
            "GET",
            "/api/events?topic=secrets&partition=0&offset=0",
        )
        .token(ADMIN)
        .expect(400, "invalid_query"),
        case("6", "a limit of zero", "GET", "/api/orders?limit=0")
            .token(VIEWER)
            .expect(400, "invalid_query"),
        case(
            "6",
            "a limit of a million",
            "GET",
            "/api/orders?limit=1000000",
        )
        .token(VIEWER)
        .expect(400, "invalid_query"),
        case(
            "6",
            "a forged paging cursor",
            "GET",
            "/api/orders?cursor=AAAA%00BBBB",
        )
        .token(VIEWER)
        .expect(400, "invalid_query"),
        case("6", "an unknown status", "GET", "/api/orders?status=Stolen")
            .token(VIEWER)
            .expect(400, "invalid_query"),
        case(
            "6",
            "wait that is not a boolean",
            "POST",
            "/api/orders?wait=maybe",
        )
        .token(CLIENT)
        .json(order())
        .expect(400, "invalid_query"),
        // 7. The live stream.
        upgrade("7", "a malformed cursor", "/ws?cursor=orders:zero:1")
            .token(VIEWER)
            .expect(400, "bad_cursor"),
        upgrade(
            "7",
            "a cursor naming a partition twice",
            "/ws?cursor=orders:0:5,orders:0:0",
        )
        .token(VIEWER)
        .expect(400, "bad_cursor"),
        upgrade(
            "7",
            "a cursor with a negative offset",
            "/ws?cursor=orders:0:-5",
        )
        .token(VIEWER)
        .expect(400, "bad_cursor"),
        case("7", "a WebSocket version from the future", "GET", "/ws")
            .token(VIEWER)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "99")
            .expect(426, "websocket_version"),
        case("7", "a plain GET of the live stream", "GET", "/ws")
            .token(VIEWER)
            .expect(400, "websocket_required"),
        // 9. Browser protections: names that lie about themselves.
        case(
            "9",
            "a right-to-left override in a name",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .json(with("customer_name", json!("Bob \u{202E}nimdA")))
        .expect(422, "validation_failed"),
        case(
            "9",
            "a zero-width space in a product",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .json(with("product", json!("Lap\u{200B}top")))
        .expect(422, "validation_failed"),
        case(
            "9",
            "a byte-order mark in an address",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .json(with("address", json!("\u{FEFF}1 Attack Lane")))
        .expect(422, "validation_failed"),
        case(
            "9",
            "an isolate in a cancel reason",
            "POST",
            "/api/orders/nope/cancel",
        )
        .token(CLIENT)
        .json(json!({"reason": "\u{2067}x"}))
        .expect(422, "validation_failed"),
        // OWASP API1, API3 (object and property level authorization), API4, API8, API9.
        case(
            "api",
            "mass assignment of the status",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .json(with("status", json!("Paid")))
        .expect(422, "validation_failed"),
        case(
            "api",
            "mass assignment of the order id",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .json(with("order_id", json!("chosen-id")))
        .expect(422, "validation_failed"),
        case(
            "api",
            "mass assignment of the event id",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .json(with("event_id", json!("chosen")))
        .expect(422, "validation_failed"),
        case("api", "a negative amount", "POST", "/api/orders")
            .token(CLIENT)
            .json(with("amount", json!("-10.00")))
            .expect(422, "validation_failed"),
        case("api", "an amount of 1e400", "POST", "/api/orders")
            .token(CLIENT)
            .header("content-type", "application/json")
            .raw(order().to_string().replace("\"10.00\"", "1e400"))
            .expect(422, "validation_failed"),
        case("api", "three decimals", "POST", "/api/orders")
            .token(CLIENT)
            .json(with("amount", json!("10.001")))
            .expect(422, "validation_failed"),
        case("api", "a quantity of a billion", "POST", "/api/orders")
            .token(CLIENT)
            .json(with("quantity", json!(1_000_000_000)))
            .expect(422, "validation_failed"),
        case(
            "api",
            "an Idempotency-Key of 1,000 characters",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .header("idempotency-key", "k".repeat(1_000))
        .json(order())
        .expect(400, "invalid_idempotency_key"),
        case(
            "api",
            "an Idempotency-Key with a tab",
            "POST",
            "/api/orders",
        )
        .token(CLIENT)
        .header("idempotency-key", "a\tb")
        .json(order())
        .expect(400, "invalid_idempotency_key"),
        case("api", "invalid UTF-8 in a JSON body", "POST", "/api/orders")
            .token(CLIENT)
            .header("content-type", "application/json")
            .raw(b"{\"customer_name\": \"\xff\xfe\"}".to_vec())
            .expect(400, "invalid_json"),
        case("api", "XML sent as JSON", "POST", "/api/orders")
            .token(CLIENT)
            .header("content-type", "application/json")
            .raw("<order/>")
            .expect(400, "invalid_json"),
        case(
            "api",
            "a path traversal to a file",
            "GET",
            "/js/../../../../etc/ssl/openssl.cnf",
        )
        .expect(404, "not_found"),
        case(
            "api",
            "an encoded path traversal in an id",
            "GET",
            "/api/orders/..%2F..%2Fetc%2Fpasswd",
        )
        .token(VIEWER)
        .expect(404, "not_found"),
        case(
            "api",
            "an order id of 10,000 characters",
            "GET",
            &format!("/api/orders/{}", "a".repeat(10_000)),
        )
        .token(VIEWER)
        .expect(404, "not_found"),
        case("api", "TRACE", "TRACE", "/api/orders")
            .token(ADMIN)
            .expect(405, "method_not_allowed"),
        case("api", "a CORS preflight", "OPTIONS", "/api/orders")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .expect(403, "cross_origin"),
        case(
            "api",
            "a method override header",
            "POST",
            "/api/deliveries/d-1",
        )
        .token(CLIENT)
        .header("x-http-method-override", "PATCH")
        .json(json!({"status": "Delivered"}))
        .expect(405, "method_not_allowed"),
        // 4. Oversized heads: shopstream's own limit, then hyper's.
        case("4", "one header of 20 KiB", "GET", "/api/orders")
            .token(VIEWER)
            .header("x-padding", "p".repeat(20 * 1024))
            .expect(431, "headers_too_large"),
        case(
            "4",
            "a target of 20 KiB",
            "GET",
            &format!("/api/orders?q={}", "q".repeat(20 * 1024)),
        )
        .token(VIEWER)
        .expect(431, "headers_too_large"),
        case("4", "one header of 500 KiB", "GET", "/api/orders")
            .token(VIEWER)
            .header("x-padding", "p".repeat(500 * 1024))
            .expect_bare(431),
    ]
}

/// Sends a case over its own connection; a header given twice is sent twice.
async fn send_case(addr: SocketAddr, c: &Case) -> Result<Reply, String> {
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exchange(addr, c.method, &c.path, &headers, c.body.clone()).await
}

async fn still_healthy(addr: SocketAddr, after: &str) {
    let (status, _) = support::http::get(addr, "/healthz")
        .await
        .unwrap_or_else(|e| panic!("after {after}: /healthz failed: {e}"));
    assert_eq!(status, 200, "after {after}");
}

async fn start(extra: &[&str]) -> (TestApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(support::unique_name("hostile-tokens"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(
        &file,
        format!("admin:{ADMIN}\nclient:{CLIENT}\nviewer:{VIEWER}\nmetrics:{METRICS}\n"),
    )
    .unwrap();
    let prefix = format!("{}.", support::unique_name("hostile"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_request_gets_a_4xx_and_the_server_stays_healthy() {
    let (server, dir) = start(&[]).await;
    let cases = with_tokens_cases();
    let mut table = Vec::new();
    for c in &cases {
        let what = format!("[{}] {}", c.finding, c.name);
        // hyper may close the connection while a client still sends an oversized head: a reset
        // instead of the 431 is the same refusal.
        let reply = match send_case(server.addr, c).await {
            Ok(reply) => reply,
            Err(error) if c.code.is_none() && !error.contains("did not answer") => {
                table.push(format!("{what}: connection refused mid-request ({error})"));
                still_healthy(server.addr, &what).await;
                continue;
            }
            Err(error) => panic!("{what}: {error}"),
        };
        assert!(
            (400..500).contains(&reply.status),
            "{what}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.raw[..reply.raw.len().min(300)])
        );
        assert_eq!(reply.status, c.status, "{what}: {}", reply.json);
        if let Some(code) = c.code {
            assert_eq!(reply.json["error"]["code"], code, "{what}: {}", reply.json);
            assert!(
                reply.raw.len() <= 16 * 1024,
                "{what}: an error answer of {} bytes",
                reply.raw.len()
            );
        }
        assert!(
            !String::from_utf8_lossy(&reply.raw).contains(ADMIN),
            "{what}: an answer repeats a token"
        );
        table.push(format!("{what}: {}", reply.status));
        still_healthy(server.addr, &what).await;
    }
    assert!(cases.len() >= 60, "{} cases", cases.len());
    // 6. The probes are open to everyone: they tell no broker address or error text.
    let ready = exchange(server.addr, "GET", "/readyz", &[], "")
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
    let bootstrap = support::bootstrap();
    assert!(
        !String::from_utf8_lossy(&ready.raw).contains(&bootstrap),
        "{}",
        ready.json
    );
    println!("{}", table.join("\n"));
    // Nothing a refused request asked for happened: the simulator stayed off, no order exists.
    let admin = [("authorization", format!("Bearer {ADMIN}"))];
    let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let simulator = exchange(server.addr, "GET", "/api/simulator", &admin, "")
        .await
        .unwrap();
    assert_eq!(simulator.json["running"], false, "{}", simulator.json);
    let orders = exchange(server.addr, "GET", "/api/orders", &admin, "")
        .await
        .unwrap();
    assert_eq!(orders.json["items"], json!([]), "{}", orders.json);
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// Reads until the server closes the connection, at most `within`; returns what came.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {within:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_would_hold_the_server_are_closed() {
    // 3. Short limits, so that the test is short; the defaults are 10 s and 60 s.
    let (server, dir) = start(&[
        "--header-timeout",
        "1s",
        "--body-timeout",
        "1s",
        "--idle-timeout",
        "2s",
        "--max-live-sessions",
        "2",
    ])
    .await;
    let addr = server.addr;
    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    read_until_closed(&mut silent, Duration::from_secs(8))
        .await
        .expect("a silent connection is closed");
    // Part of an HTTP/2 preface, then nothing: the protocol detection is bounded too.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    read_until_closed(&mut partial, Duration::from_secs(8))
        .await
        .expect("a partial preface is closed");
    // A whole HTTP/2 prior-knowledge preface and settings, then no request.
    let mut h2 = TcpStream::connect(addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    read_until_closed(&mut h2, Duration::from_secs(8))
        .await
        .expect("an idle HTTP/2 connection is closed");
    // Headers dripped one byte at a time.
    let mut drip = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: {addr}\r\nx-slow: {}\r\n\r\n",
        "s".repeat(100)
    );
    let dripped = async {
        for byte in head.as_bytes() {
            if drip.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), dripped).await;
    read_until_closed(&mut drip, Duration::from_secs(8))
        .await
        .expect("dripped headers are cut off");
    // A body sent one byte every half second.
    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    let body = order().to_string();
    slow_body
        .write_all(
            format!(
                "POST /api/orders HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {CLIENT}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let dripping = async {
        for byte in body.as_bytes() {
            if slow_body.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), dripping).await;
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(8))
        .await
        .expect("a dripped body is cut off");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    // A keep-alive connection left idle after its answer.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // It outlives the header timeout (1 s): only the idle timeout (2 s) closes it.
    let mut answer = vec![0u8; 4096];
    let mut got = 0;
    let open_until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < open_until {
        let left = open_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, kept.read(&mut answer[got..])).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed before the idle timeout"),
            Ok(Ok(n)) => got += n,
        }
    }
    let rest = read_until_closed(&mut kept, Duration::from_secs(8))
        .await
        .expect("an idle keep-alive connection is closed");
    answer.truncate(got);
    answer.extend_from_slice(&rest);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // A second request's head begun and left unfinished is cut off by the header timeout,
    // well before the idle one would close the connection.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stalled.read_exact(&mut first))
        .await
        .expect("an answer to the first request")
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    stalled.write_all(b"GET /healthz HT").await.unwrap();
    let begun = Instant::now();
    read_until_closed(&mut stalled, Duration::from_secs(8))
        .await
        .expect("an unfinished second head is cut off");
    // The header timeout (1 s from the head's first byte) closes it, not the idle timeout
    // (2 s from the last answer).
    assert!(
        begun.elapsed() < Duration::from_millis(1_800),
        "an unfinished head was closed only after {:?}",
        begun.elapsed()
    );

    // 7. Live sessions are capped: the third of two is told to come back later.
    let viewer = format!("Bearer {VIEWER}");
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let mut ws = TcpStream::connect(addr).await.unwrap();
        let mut request =
            format!("GET /ws HTTP/1.1\r\nhost: {addr}\r\nauthorization: {viewer}\r\n");
        for (k, v) in UPGRADE {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        ws.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"HTTP/1.1 101");
        sessions.push(ws);
    }
    let mut third = upgrade("7", "a session past the cap", "/ws").token(VIEWER);
    third.status = 429;
    let reply = send_case(addr, &third).await.unwrap();
    assert_eq!(reply.status, 429, "{}", reply.json);
    assert_eq!(reply.json["error"]["code"], "too_many_sessions");
    assert!(reply.headers.contains_key("retry-after"));
    drop(sessions);
    support::eventually(
        "a session slot frees when a client leaves",
        Duration::from_secs(10),
        || async {
            let reply = send_case(addr, &upgrade("7", "again", "/ws").token(VIEWER)).await?;
            if reply.status == 101 {
                Ok(())
            } else {
                Err(format!("{}", reply.status))
            }
        },
    )
    .await;
    still_healthy(addr, "the connection cases").await;
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cap_makes_the_next_client_wait_not_fail() {
    let (server, dir) = start(&["--max-connections", "2", "--header-timeout", "3s"]).await;
    let addr = server.addr;
    // Two connections that say nothing hold both slots until the header timeout.
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, _) = support::http::get(addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    // It was answered once a slot was free (the silent ones were closed), not refused.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "served past the cap after {:?}",
        started.elapsed()
    );
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_too_far_behind_gets_resets_not_a_replay_of_the_log() {
    let (server, dir) = start(&["--max-replay", "5"]).await;
    let addr = server.addr;
    let client = [("authorization", format!("Bearer {CLIENT}"))];
    let client: Vec<(&str, &str)> = client.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..12 {
        let placed = exchange(addr, "POST", "/api/orders/create?wait=true", &client, "")
            .await
            .unwrap();
        assert_eq!(placed.status, 201, "{}", placed.json);
    }
    let mut ws = TcpStream::connect(addr).await.unwrap();
    let cursor = "orders:0:0,orders:1:0,orders:2:0";
    let mut request = format!(
        "GET /ws?cursor={cursor} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {VIEWER}\r\n"
    );
    for (k, v) in UPGRADE {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    ws.write_all(request.as_bytes()).await.unwrap();
    // Read frames (unmasked text frames from the server) until caught_up.
    let mut seen = String::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("caught_up") {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, ws.read(&mut buf))
            .await
            .expect("frames arrive")
            .unwrap();
        assert!(n > 0, "closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("\"type\":\"reset\""), "{seen}");
    assert!(seen.contains("--max-replay"), "{seen}");
    assert!(seen.contains("\"replayed\":0"), "{seen}");
    assert!(
        !seen.contains("\"type\":\"event\""),
        "no event replayed: {seen}"
    );
    still_healthy(addr, "a resume too far behind").await;
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_another_site_cannot_use_a_visitors_browser() {
    // 2, on the default configuration (no token, loopback only).
    let prefix = format!("{}.", support::unique_name("hostile-open"));
    let server = TestApp::start(&support::bootstrap(), &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;
    let cases = [
        case("2", "a DNS-rebound host name", "GET", "/api/orders")
            .header("host", "attacker.example:8080")
            .expect(403, "host_not_allowed"),
        case(
            "2",
            "a cross-site simple POST",
            "POST",
            "/api/orders/create",
        )
        .header("origin", "https://attacker.example")
        .header("content-type", "text/plain")
        .expect(403, "cross_origin"),
        upgrade("2", "cross-site WebSocket hijacking", "/ws")
            .header("origin", "https://attacker.example")
            .expect(403, "cross_origin"),
        case("2", "a text/plain body from curl", "POST", "/api/simulator")
            .header("content-type", "text/plain")
            .raw(r#"{"running":true,"rate":200}"#)
            .expect(415, "unsupported_media_type"),
    ];
    for c in &cases {
        let what = format!("[{}] {}", c.finding, c.name);
        let reply = send_case(server.addr, c)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reply.status, c.status, "{what}: {}", reply.json);
        assert_eq!(reply.json["error"]["code"], c.code.unwrap(), "{what}");
        still_healthy(server.addr, &what).await;
    }
    let (status, simulator) = support::http::get(server.addr, "/api/simulator")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(simulator["running"], false);
    server.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_idempotency_keys_are_invisible_to_another() {
    // 8. A key is the client's own: another token that guesses it neither gets the first
    // client's answer (its customer's data) nor learns that the key was used.
    let (server, dir) = start(&[]).await;
    let post = |token: &'static str, body: Value| {
        let addr = server.addr;
        async move {
            let auth = format!("Bearer {token}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("idempotency-key", "checkout-42"),
            ];
            exchange(addr, "POST", "/api/orders", &headers, body.to_string())
                .await
                .unwrap()
        }
    };
    let victim = post(CLIENT, order()).await;
    assert_eq!(victim.status, 201, "{}", victim.json);
    let attacker = post(ADMIN, with("product", json!("Something else"))).await;
    assert_eq!(
        attacker.status, 201,
        "another client's key is not this one's: {}",
        attacker.json
    );
    assert!(attacker.headers.get("idempotent-replayed").is_none());
    assert_ne!(
        attacker.json["order"]["order_id"],
        victim.json["order"]["order_id"]
    );
    assert_ne!(attacker.json["order"]["customer_email"], Value::Null);
    let replayed = post(CLIENT, order()).await;
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    still_healthy(server.addr, "idempotency keys of two clients").await;
    server.stop(Duration::from_secs(10)).await;
    std::fs::remove_dir_all(dir).unwrap();
}
