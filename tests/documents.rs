//! The API documents against real answers and real records, on the real broker.
//!
//! - `GET /api/openapi.json` is valid OpenAPI 3.1 (the `openapi-spec-validator` package from
//!   PyPI, which checks it offline against the 3.1 meta-schema), and `GET /api/asyncapi.json`
//!   valid AsyncAPI 3.0 (the official JSON Schema of `@asyncapi/specs` from npm, run by Python's
//!   `jsonschema`).
//! - Every route of the table is asked, on happy and error paths, by a client with tokens; each
//!   answer's status must be one its operation documents and its body must validate against the
//!   schema of that route and status (the `jsonschema` crate, formats asserted); the bodies the
//!   test sends are checked against the request schemas too, accepted ones valid and refused
//!   ones invalid.
//! - The records those requests wrote are read back from Kafka (the event browser) and each
//!   value, key and header set is checked against the AsyncAPI message of its event type.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::TestApp;
use support::http::{Reply, send};

const ADMIN: &str = "admin-0d1c2b3a4f5e6d7c8b9a";
const CLIENT: &str = "client-9a8b7c6d5e4f3a2b1c0d";
const VIEWER: &str = "viewer-1f2e3d4c5b6a7f8e9d0c";

/// A JSON pointer token (`/` and `~` escaped).
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Validates answers and records against a document, one compiled schema per pointer.
struct Documented {
    doc: Value,
    draft: jsonschema::Draft,
    compiled: HashMap<String, jsonschema::Validator>,
}

impl Documented {
    fn new(doc: Value, draft: jsonschema::Draft) -> Self {
        Self {
            doc,
            draft,
            compiled: HashMap::new(),
        }
    }

    /// The problems of `instance` against the schema at `pointer` in the document (the whole
    /// document is the schema's root, so that its `#/components/...` references resolve).
    fn problems(&mut self, pointer: &str, instance: &Value) -> Vec<String> {
        assert!(
            self.doc.pointer(pointer).is_some(),
            "the document has nothing at {pointer}"
        );
        let draft = self.draft;
        let doc = &self.doc;
        let validator = self.compiled.entry(pointer.to_string()).or_insert_with(|| {
            let mut root = doc.clone();
            // A URI fragment: braces (path templates) percent-encoded.
            let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
            root["$ref"] = Value::from(format!("#{fragment}"));
            jsonschema::options()
                .with_draft(draft)
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
        });
        validator
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    fn assert_valid(&mut self, pointer: &str, instance: &Value, what: &str) {
        let problems = self.problems(pointer, instance);
        assert!(
            problems.is_empty(),
            "{what} does not match {pointer}:\n  {}\n{instance:#}",
            problems.join("\n  ")
        );
    }
}

/// Checks every answer against the OpenAPI document and notes which (operation, status)
/// pairs were seen.
struct Api {
    server: TestApp,
    spec: Documented,
    seen: BTreeSet<(String, String, u16)>,
}

impl Api {
    /// `method path` with the route template `template`, checked against the document.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let mut all = headers.to_vec();
        let text = match body {
            Some(body) => {
                all.push(("content-type", "application/json"));
                body.to_string()
            }
            None => String::new(),
        };
        let reply = send(self.server.addr, method, path, &all, text).await;
        self.check(method, template, &reply, body);
        reply
    }

    fn check(&mut self, method: &str, template: &str, reply: &Reply, body: Option<&Value>) {
        let what = format!("{method} {template} → {}", reply.status);
        let operation = format!("/paths/{}/{}", token(template), method.to_ascii_lowercase());
        assert!(
            self.spec.doc.pointer(&operation).is_some(),
            "{what}: no such operation in the document"
        );
        let response = format!("{operation}/responses/{}", reply.status);
        let Some(documented) = self.spec.doc.pointer(&response).cloned() else {
            panic!(
                "{what}: the document does not list this status: {}",
                reply.json
            );
        };
        assert!(
            reply.headers.contains_key("x-request-id"),
            "{what}: every answer carries X-Request-Id"
        );
        if let Some(media) = documented["content"].as_object()
            && media.contains_key("application/json")
        {
            assert!(
                reply.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{what}"
            );
            self.spec.assert_valid(
                &format!("{response}/content/application~1json/schema"),
                &reply.json,
                &what,
            );
        }
        // The body sent: valid when it was accepted, invalid when refused as invalid (422
        // validation_failed), whenever a schema can say so.
        if let Some(body) = body {
            let schema = format!("{operation}/requestBody/content/application~1json/schema");
            if self.spec.doc.pointer(&schema).is_some() && reply.status < 300 {
                self.spec
                    .assert_valid(&schema, body, &format!("{what}: the body sent"));
            }
        }
        self.seen
            .insert((method.to_string(), template.to_string(), reply.status));
    }

    /// A body the request schema refuses, and the server too (422, or 400 for another reason).
    async fn refused_body(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Reply {
        let operation = format!("/paths/{}/{}", token(template), method.to_ascii_lowercase());
        let schema = format!("{operation}/requestBody/content/application~1json/schema");
        assert!(
            !self.spec.problems(&schema, &body).is_empty(),
            "{method} {template}: the request schema accepts {body}, which the server refuses"
        );
        let reply = self
            .call(method, template, path, headers, Some(&body))
            .await;
        assert_eq!(
            reply.status, 422,
            "{method} {template} {body}: {}",
            reply.json
        );
        assert_eq!(reply.json["error"]["code"], "validation_failed");
        reply
    }

    /// An answer that no operation gives: a 404 for an unknown path, a 405 for a known path
    /// and another method, checked against the document's shared responses.
    async fn unrouted(&mut self, method: &str, path: &str, component: &str) -> Reply {
        let reply = send(
            self.server.addr,
            method,
            path,
            &[("authorization", &format!("Bearer {ADMIN}"))],
            "",
        )
        .await;
        let pointer = format!("/components/responses/{component}/content/application~1json/schema");
        self.spec
            .assert_valid(&pointer, &reply.json, &format!("{method} {path}"));
        reply
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn order(email: &str, amount: &str) -> Value {
    json!({
        "customer_name": "Zoé Martin",
        "customer_email": email,
        "product": "Lamp",
        "quantity": 2,
        "amount": amount,
        "currency": "eur",
        "address": "1 Rue de la Paix, 75002 Paris",
    })
}

/// Where pip- and npm-installed checkers are kept between runs.
fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/shopstream")
}

/// Runs `python3 -c script` with `args`; `Err` with what it printed when it failed.
fn python(script: &str, args: &[&str]) -> Result<String, String> {
    let output = support::run_with_stdin(
        Command::new("python3").arg("-c").arg(script).args(args),
        b"",
        Duration::from_secs(180),
    )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Python with `openapi_spec_validator` and `jsonschema`, installing them with pip once.
fn python_validators() {
    let check = "import openapi_spec_validator, jsonschema";
    if python(check, &[]).is_ok() {
        return;
    }
    eprintln!("openapi-spec-validator is not installed: installing it with pip");
    let installed = support::run_with_stdin(
        Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "openapi-spec-validator",
            "jsonschema",
        ]),
        b"",
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("pip: {e}"));
    assert!(
        installed.status.success(),
        "pip install openapi-spec-validator failed:\n{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    python(check, &[]).unwrap_or_else(|e| panic!("still not importable: {e}"));
}

/// The AsyncAPI 3.0.0 JSON Schema, from the `@asyncapi/specs` package (npm), fetched once.
fn asyncapi_schema() -> PathBuf {
    const VERSION: &str = "6.11.1";
    let dir = cache_dir().join(format!("asyncapi-specs-{VERSION}"));
    let schema = dir.join("package/schemas/3.0.0.json");
    if schema.exists() {
        return schema;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let packed = support::run_with_stdin(
        Command::new("npm")
            .args(["pack", "--silent", &format!("@asyncapi/specs@{VERSION}")])
            .current_dir(&dir),
        b"",
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("npm pack: {e}"));
    assert!(
        packed.status.success(),
        "npm pack @asyncapi/specs failed:\n{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let tarball = format!("asyncapi-specs-{VERSION}.tgz");
    let untar = Command::new("tar")
        .args(["xzf", &tarball])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(untar.success(), "tar xzf {tarball}");
    assert!(schema.exists(), "{} is missing", schema.display());
    schema
}

async fn start() -> (TestApp, PathBuf) {
    let dir = std::env::temp_dir().join(support::unique_name("documents"));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("admin:{ADMIN}\nclient:{CLIENT}\nviewer:{VIEWER}\n"),
    )
    .unwrap();
    let prefix = format!("{}.", support::unique_name("documents"));
    let server = TestApp::start(
        &support::bootstrap(),
        &[
            "--topic-prefix",
            &prefix,
            "--tokens-file",
            support::path_str(&tokens),
            "--body-timeout",
            "1s",
        ],
    )
    .await;
    server.wait_ready(Duration::from_secs(60)).await;
    (server, dir)
}

async fn document(server: &TestApp, path: &str) -> Value {
    let reply = send(server.addr, "GET", path, &[], "").await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.json);
    reply.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_are_valid_openapi_and_asyncapi() {
    let (server, dir) = start().await;
    let openapi = document(&server, "/api/openapi.json").await;
    let asyncapi = document(&server, "/api/asyncapi.json").await;
    let openapi_file = dir.join("openapi.json");
    let asyncapi_file = dir.join("asyncapi.json");
    std::fs::write(&openapi_file, openapi.to_string()).unwrap();
    std::fs::write(&asyncapi_file, asyncapi.to_string()).unwrap();

    let schema = asyncapi_schema();
    tokio::task::spawn_blocking(move || {
        python_validators();
        // The OpenAPI 3.1 meta-schema and its schema dialect, offline.
        let out = python(
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
             print('valid OpenAPI 3.1')",
            &[support::path_str(&openapi_file)],
        )
        .unwrap_or_else(|e| panic!("/api/openapi.json is not valid OpenAPI 3.1:\n{e}"));
        assert!(out.contains("valid OpenAPI 3.1"), "{out}");
        // The official AsyncAPI 3.0.0 schema (draft-07).
        let out = python(
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             doc = json.load(open(sys.argv[2]))\n\
             errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))\n\
             [print(e.json_path, e.message[:300]) for e in errors[:10]]\n\
             sys.exit(1 if errors else 0)",
            &[
                support::path_str(&schema),
                support::path_str(&asyncapi_file),
            ],
        )
        .unwrap_or_else(|e| panic!("/api/asyncapi.json is not valid AsyncAPI 3.0:\n{e}"));
        assert!(out.trim().is_empty(), "{out}");
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Sends a request head that promises a body and never sends it: the answer after
/// `--body-timeout`, as (status, JSON body, raw head).
fn without_its_body(addr: std::net::SocketAddr, path: &str) -> (u16, Value, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CLIENT}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (
                    status,
                    serde_json::from_str(&body[..length]).unwrap(),
                    head.to_string(),
                );
            }
        }
    }
    panic!("no whole answer: {:?}", String::from_utf8_lossy(&answer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_and_every_record_matches_the_documents() {
    let (server, dir) = start().await;
    let openapi = document(&server, "/api/openapi.json").await;
    let asyncapi = document(&server, "/api/asyncapi.json").await;
    let mut api = Api {
        server,
        spec: Documented::new(openapi, jsonschema::Draft::Draft202012),
        seen: BTreeSet::new(),
    };
    // The checker refuses what the document does not say (so that its passes mean something).
    let health = "/paths/~1healthz/get/responses/200/content/application~1json/schema";
    assert!(
        !api.spec
            .problems(health, &json!({"status": "ok"}))
            .is_empty()
    );
    assert!(
        !api.spec
            .problems(
                health,
                &json!({"status": "fine", "version": "1", "uptime_seconds": 1})
            )
            .is_empty()
    );
    let refused = "/paths/~1api~1orders/get/responses/401/content/application~1json/schema";
    let undocumented = json!({"error": {"code": "teapot", "message": "no"}});
    assert!(!api.spec.problems(refused, &undocumented).is_empty());
    let admin = bearer(ADMIN);
    let client = bearer(CLIENT);
    let viewer = bearer(VIEWER);
    let a: &[(&str, &str)] = &[("authorization", &admin)];
    let c: &[(&str, &str)] = &[("authorization", &client)];
    let v: &[(&str, &str)] = &[("authorization", &viewer)];

    // --- probes, documents, session --------------------------------------------------------
    api.call("GET", "/healthz", "/healthz", &[], None).await;
    api.call("GET", "/readyz", "/readyz", &[], None).await;
    for path in ["/api/openapi.json", "/api/asyncapi.json"] {
        let reply = api.call("GET", path, path, &[], None).await;
        assert_eq!(reply.status, 200);
        api.call(
            "GET",
            path,
            path,
            &[("authorization", "Bearer nope-nope-nope-nope")],
            None,
        )
        .await;
    }
    let session = api
        .call("GET", "/api/session", "/api/session", &[], None)
        .await;
    assert_eq!(session.json["mode"], "tokens");
    let signed = api
        .call(
            "POST",
            "/api/session",
            "/api/session",
            &[],
            Some(&json!({"token": CLIENT})),
        )
        .await;
    assert_eq!(signed.status, 200, "{}", signed.json);
    let wrong = api
        .call(
            "POST",
            "/api/session",
            "/api/session",
            &[],
            Some(&json!({"token": "x".repeat(20)})),
        )
        .await;
    assert_eq!(wrong.status, 401);
    api.refused_body(
        "POST",
        "/api/session",
        "/api/session",
        &[],
        json!({"token": 7}),
    )
    .await;
    let not_json = send(
        api.server.addr,
        "POST",
        "/api/session",
        &[("content-type", "application/json")],
        "{not json",
    )
    .await;
    api.check("POST", "/api/session", &not_json, None);
    assert_eq!(not_json.status, 400);
    let as_text = send(
        api.server.addr,
        "POST",
        "/api/session",
        &[("content-type", "text/plain")],
        "{}",
    )
    .await;
    api.check("POST", "/api/session", &as_text, None);
    assert_eq!(as_text.status, 415);
    let out = api
        .call("DELETE", "/api/session", "/api/session", &[], None)
        .await;
    assert_eq!(out.status, 200);
    let elsewhere = [("origin", "https://evil.example")];
    let refused = api
        .call("DELETE", "/api/session", "/api/session", &elsewhere, None)
        .await;
    assert_eq!(refused.json["error"]["code"], "cross_origin");
    let wrong_bearer = [("authorization", "Bearer not-a-configured-token")];
    let refused = api
        .call("GET", "/api/session", "/api/session", &wrong_bearer, None)
        .await;
    assert_eq!(refused.json["error"]["code"], "invalid_token");

    // --- who may ask -----------------------------------------------------------------------
    for (headers, status) in [
        (vec![], 401),
        (
            vec![("authorization", "Bearer not-a-configured-token")],
            401,
        ),
    ] {
        let reply = api
            .call("GET", "/api/orders", "/api/orders", &headers, None)
            .await;
        assert_eq!(reply.status, status, "{}", reply.json);
    }
    let stale = api
        .call(
            "GET",
            "/api/orders",
            "/api/orders",
            &[("cookie", "shopstream_session=v1.stale.cookie")],
            None,
        )
        .await;
    assert_eq!(stale.json["error"]["code"], "invalid_session");
    let in_query = api
        .call("GET", "/api/orders", "/api/orders?token=abc", c, None)
        .await;
    assert_eq!(in_query.json["error"]["code"], "token_in_query");
    let huge = "x".repeat(17 * 1024);
    let too_large = api
        .call(
            "GET",
            "/api/orders",
            "/api/orders",
            &[c[0], ("x-padding", &huge)],
            None,
        )
        .await;
    assert_eq!(too_large.status, 431);
    let cross = api
        .call(
            "GET",
            "/api/orders",
            "/api/orders",
            &[c[0], ("origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(cross.json["error"]["code"], "cross_origin");
    let forbidden = api
        .call(
            "POST",
            "/api/orders",
            "/api/orders",
            v,
            Some(&order("a@example.com", "10")),
        )
        .await;
    assert_eq!(forbidden.status, 403);

    // --- writes ----------------------------------------------------------------------------
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let keyed = [
        c[0],
        ("idempotency-key", "documents-order-1"),
        ("traceparent", trace),
    ];
    let body = order("zoe.martin@example.com", "19.98");
    let placed = api
        .call(
            "POST",
            "/api/orders",
            "/api/orders?wait=true",
            &keyed,
            Some(&body),
        )
        .await;
    assert_eq!(placed.status, 201, "{}", placed.json);
    let paid_id = placed.json["order"]["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = api
        .call(
            "POST",
            "/api/orders",
            "/api/orders?wait=true",
            &keyed,
            Some(&body),
        )
        .await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let reused = api
        .call(
            "POST",
            "/api/orders",
            "/api/orders",
            &keyed,
            Some(&order("b@example.com", "5")),
        )
        .await;
    assert_eq!(reused.json["error"]["code"], "idempotency_key_reused");
    let bad_key = api
        .call(
            "POST",
            "/api/orders",
            "/api/orders",
            &[c[0], ("idempotency-key", "has space")],
            Some(&body),
        )
        .await;
    assert_eq!(bad_key.json["error"]["code"], "invalid_idempotency_key");
    let bad_wait = api
        .call(
            "POST",
            "/api/orders",
            "/api/orders?wait=maybe",
            c,
            Some(&body),
        )
        .await;
    assert_eq!(bad_wait.json["error"]["code"], "invalid_query");
    let mut unknown_field = body.clone();
    unknown_field["colour"] = json!("red");
    api.refused_body("POST", "/api/orders", "/api/orders", c, unknown_field)
        .await;
    api.refused_body(
        "POST",
        "/api/orders",
        "/api/orders",
        c,
        json!({"customer_name": "A", "amount": "1.001"}),
    )
    .await;
    api.refused_body(
        "POST",
        "/api/orders",
        "/api/orders",
        c,
        order("a@example.com", "0.00"),
    )
    .await;
    let big = json!({ "customer_name": "x".repeat(70 * 1024) });
    let too_big = api
        .call("POST", "/api/orders", "/api/orders", c, Some(&big))
        .await;
    assert_eq!(too_big.status, 413);
    let (status, body_timeout, head) = tokio::task::spawn_blocking({
        let addr = api.server.addr;
        move || without_its_body(addr, "/api/orders")
    })
    .await
    .unwrap();
    assert_eq!(status, 408, "{body_timeout}");
    assert!(head.to_ascii_lowercase().contains("x-request-id"), "{head}");
    api.spec.assert_valid(
        "/paths/~1api~1orders/post/responses/408/content/application~1json/schema",
        &body_timeout,
        "POST /api/orders 408",
    );
    api.seen.insert(("POST".into(), "/api/orders".into(), 408));

    let demo = api
        .call(
            "POST",
            "/api/orders/create",
            "/api/orders/create?wait=true",
            c,
            None,
        )
        .await;
    assert_eq!(demo.status, 201, "{}", demo.json);
    let demo_id = demo.json["order"]["order_id"].as_str().unwrap().to_string();
    api.refused_body(
        "POST",
        "/api/orders/create",
        "/api/orders/create",
        c,
        json!({"x": 1}),
    )
    .await;

    let placed_more = |email: &'static str| order(email, "19.98");
    let mut ids = Vec::new();
    for email in ["c@decline.test", "d@example.com", "e@example.com"] {
        let reply = api
            .call(
                "POST",
                "/api/orders",
                "/api/orders?wait=true",
                c,
                Some(&placed_more(email)),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.json);
        ids.push(
            reply.json["order"]["order_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (declined_id, seed_paid_id, cancelled_id) = (&ids[0], &ids[1], &ids[2]);

    // Payments.
    let pay = "/api/orders/{id}/payments";
    let paid = api
        .call(
            "POST",
            pay,
            &format!("/api/orders/{paid_id}/payments?wait=true"),
            c,
            Some(&json!({"method": "credit_card", "amount": 19.98})),
        )
        .await;
    assert_eq!(paid.json["payment"]["status"], "SUCCESS", "{}", paid.json);
    let declined = api
        .call(
            "POST",
            pay,
            &format!("/api/orders/{declined_id}/payments?wait=true"),
            c,
            Some(&json!({"method": "PayPal"})),
        )
        .await;
    assert_eq!(
        declined.json["payment"]["status"], "FAILED",
        "{}",
        declined.json
    );
    let twice = api
        .call(
            "POST",
            pay,
            &format!("/api/orders/{paid_id}/payments"),
            c,
            Some(&json!({"method": "PayPal"})),
        )
        .await;
    assert_eq!(twice.status, 409);
    let missing = api
        .call(
            "POST",
            pay,
            "/api/orders/no-such-order/payments",
            c,
            Some(&json!({"method": "PayPal"})),
        )
        .await;
    assert_eq!(missing.status, 404);
    let bad_method = api
        .call(
            "POST",
            pay,
            &format!("/api/orders/{paid_id}/payments"),
            c,
            Some(&json!({"method": "Cash"})),
        )
        .await;
    assert_eq!(bad_method.status, 422);
    api.refused_body(
        "POST",
        pay,
        &format!("/api/orders/{paid_id}/payments"),
        c,
        json!({}),
    )
    .await;
    let seed = api
        .call(
            "POST",
            "/api/payments",
            "/api/payments?wait=true",
            c,
            Some(&json!({"order_id": seed_paid_id, "method": "Bank Transfer", "amount": "19.98"})),
        )
        .await;
    assert_eq!(seed.status, 201, "{}", seed.json);
    for (body, status) in [
        (json!({"order_id": seed_paid_id, "method": "PayPal"}), 409),
        (
            json!({"order_id": "no-such-order", "method": "PayPal"}),
            404,
        ),
    ] {
        let reply = api
            .call("POST", "/api/payments", "/api/payments", c, Some(&body))
            .await;
        assert_eq!(reply.status, status, "{}", reply.json);
    }
    api.refused_body(
        "POST",
        "/api/payments",
        "/api/payments",
        c,
        json!({"method": "PayPal"}),
    )
    .await;

    // Cancellations.
    let cancel = "/api/orders/{id}/cancel";
    let cancelled = api
        .call(
            "POST",
            cancel,
            &format!("/api/orders/{cancelled_id}/cancel?wait=true"),
            c,
            Some(&json!({"reason": "changed my mind"})),
        )
        .await;
    assert_eq!(cancelled.status, 201, "{}", cancelled.json);
    let late = api
        .call(
            "POST",
            cancel,
            &format!("/api/orders/{paid_id}/cancel"),
            c,
            None,
        )
        .await;
    assert_eq!(late.status, 409);
    let nobody = api
        .call("POST", cancel, "/api/orders/no-such-order/cancel", c, None)
        .await;
    assert_eq!(nobody.status, 404);
    api.refused_body(
        "POST",
        cancel,
        &format!("/api/orders/{demo_id}/cancel"),
        c,
        json!({"reason": "r".repeat(201)}),
    )
    .await;

    // Deliveries.
    let ship = "/api/orders/{id}/deliveries";
    let shipped = api
        .call(
            "POST",
            ship,
            &format!("/api/orders/{paid_id}/deliveries?wait=true"),
            c,
            Some(&json!({"carrier": "DHL"})),
        )
        .await;
    assert_eq!(shipped.status, 201, "{}", shipped.json);
    let delivery_id = shipped.json["delivery"]["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    let unpaid = api
        .call(
            "POST",
            ship,
            &format!("/api/orders/{demo_id}/deliveries"),
            c,
            None,
        )
        .await;
    assert_eq!(unpaid.status, 409);
    let ghost = api
        .call(
            "POST",
            ship,
            "/api/orders/no-such-order/deliveries",
            c,
            None,
        )
        .await;
    assert_eq!(ghost.status, 404);
    api.refused_body(
        "POST",
        ship,
        &format!("/api/orders/{demo_id}/deliveries"),
        c,
        json!({"carrier": 5}),
    )
    .await;
    let seed_ship = api
        .call(
            "POST",
            "/api/deliveries",
            "/api/deliveries?wait=true",
            c,
            Some(&json!({"order_id": seed_paid_id})),
        )
        .await;
    assert_eq!(seed_ship.status, 201, "{}", seed_ship.json);
    for (body, status) in [
        (json!({"order_id": demo_id}), 409),
        (json!({"order_id": "no-such-order"}), 404),
    ] {
        let reply = api
            .call("POST", "/api/deliveries", "/api/deliveries", c, Some(&body))
            .await;
        assert_eq!(reply.status, status, "{}", reply.json);
    }
    api.refused_body(
        "POST",
        "/api/deliveries",
        "/api/deliveries",
        c,
        json!({"carrier": "DHL"}),
    )
    .await;
    let advance = "/api/deliveries/{id}";
    let moved = api
        .call(
            "PATCH",
            advance,
            &format!("/api/deliveries/{delivery_id}?wait=true"),
            c,
            Some(&json!({"status": "in_transit"})),
        )
        .await;
    assert_eq!(moved.status, 201, "{}", moved.json);
    let back = api
        .call(
            "PATCH",
            advance,
            &format!("/api/deliveries/{delivery_id}"),
            c,
            Some(&json!({"status": "Shipped"})),
        )
        .await;
    assert_eq!(back.status, 409);
    let lost = api
        .call(
            "PATCH",
            advance,
            "/api/deliveries/no-such",
            c,
            Some(&json!({"status": "Delivered"})),
        )
        .await;
    assert_eq!(lost.status, 404);
    api.refused_body(
        "PATCH",
        advance,
        &format!("/api/deliveries/{delivery_id}"),
        c,
        json!({"state": "Delivered"}),
    )
    .await;

    // --- reads -----------------------------------------------------------------------------
    for (template, queries) in [
        (
            "/api/orders",
            [
                "",
                "?status=payment_failed",
                "?q=zo%C3%A9&limit=2",
                "?limit=0",
                "?cursor=nonsense",
            ],
        ),
        (
            "/api/payments",
            [
                "",
                "?status=failed",
                "?q=paypal",
                "?limit=501",
                "?status=lost",
            ],
        ),
        (
            "/api/deliveries",
            [
                "",
                "?status=in_transit",
                "?q=dhl",
                "?limit=x",
                "?cursor=zzz",
            ],
        ),
    ] {
        for query in queries {
            let reply = api
                .call("GET", template, &format!("{template}{query}"), v, None)
                .await;
            assert!(
                [200, 400].contains(&reply.status),
                "{template}{query}: {}",
                reply.json
            );
        }
    }
    let detail = api
        .call(
            "GET",
            "/api/orders/{id}",
            &format!("/api/orders/{paid_id}"),
            v,
            None,
        )
        .await;
    assert_eq!(detail.status, 200);
    assert!(detail.json["order"]["timeline"].as_array().unwrap().len() >= 3);
    api.call(
        "GET",
        "/api/orders/{id}",
        "/api/orders/no-such-order",
        v,
        None,
    )
    .await;
    api.call(
        "GET",
        "/api/deliveries/{id}",
        &format!("/api/deliveries/{delivery_id}"),
        v,
        None,
    )
    .await;
    api.call(
        "GET",
        "/api/deliveries/{id}",
        "/api/deliveries/no-such",
        v,
        None,
    )
    .await;
    for path in ["/api/stats", "/api/rules", "/api/kafka", "/api/simulator"] {
        let reply = api.call("GET", path, path, v, None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.json);
        let reply = api.call("GET", path, path, &[], None).await;
        assert_eq!(reply.status, 401, "{path}: {}", reply.json);
    }
    let events = "/api/events";
    for query in [
        "?topic=orders",
        "?topic=payments&partition=1&limit=5",
        "?topic=deliveries&time=2020-01-01T00:00:00Z",
        "?topic=nope",
        "?topic=orders&partition=99",
        "?topic=orders&offset=1&time=2020-01-01T00:00:00Z",
    ] {
        let reply = api
            .call("GET", events, &format!("{events}{query}"), a, None)
            .await;
        assert!(
            [200, 400].contains(&reply.status),
            "{query}: {}",
            reply.json
        );
    }
    let viewer_events = api
        .call("GET", events, "/api/events?topic=orders", v, None)
        .await;
    assert_eq!(viewer_events.status, 403);

    // --- operations ------------------------------------------------------------------------
    let sim = "/api/simulator";
    let tuned = api
        .call(
            "POST",
            sim,
            sim,
            a,
            Some(&json!({"running": false, "rate": 2, "payment_failure_rate": 0.5})),
        )
        .await;
    assert_eq!(tuned.status, 200, "{}", tuned.json);
    api.refused_body("POST", sim, sim, a, json!({"rate": 1000}))
        .await;
    api.call("POST", sim, sim, c, Some(&json!({}))).await;
    let backup = api
        .call("POST", "/api/store/backup", "/api/store/backup", a, None)
        .await;
    assert_eq!(backup.status, 201, "{}", backup.json);
    api.call("POST", "/api/store/backup", "/api/store/backup", v, None)
        .await;
    let metrics = api.call("GET", "/metrics", "/metrics", a, None).await;
    assert_eq!(metrics.status, 200);
    api.call("GET", "/metrics", "/metrics", v, None).await;

    // --- the live stream -------------------------------------------------------------------
    let upgrade = |version: &'static str| {
        vec![
            ("authorization", admin.as_str()),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", version),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]
    };
    let ws = send(api.server.addr, "GET", "/ws", &upgrade("13"), "").await;
    assert_eq!(ws.status, 101);
    api.check("GET", "/ws", &ws, None);
    for (path, headers, status) in [
        ("/ws", upgrade("8"), 426),
        ("/ws?cursor=orders:x", upgrade("13"), 400),
        ("/ws", vec![("authorization", admin.as_str())], 400),
    ] {
        let reply = api.call("GET", "/ws", path, &headers, None).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.json);
    }

    // --- answers of no operation -----------------------------------------------------------
    let not_allowed = api
        .unrouted("DELETE", "/api/orders", "MethodNotAllowed")
        .await;
    assert_eq!(not_allowed.status, 405);
    let unknown = api.unrouted("GET", "/api/nope", "NotFound").await;
    assert_eq!(unknown.status, 404);

    // Every operation of the document was asked, and answered both well and with an error.
    let operations: Vec<(String, String)> = api.spec.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    for (method, path) in &operations {
        let statuses: Vec<u16> = api
            .seen
            .iter()
            .filter(|(m, p, _)| m == method && p == path)
            .map(|(_, _, s)| *s)
            .collect();
        assert!(
            statuses.iter().any(|s| *s < 300),
            "{method} {path} was never answered well: {statuses:?}"
        );
        let open = matches!(path.as_str(), "/healthz" | "/readyz");
        assert!(
            open || statuses.iter().any(|s| *s >= 400),
            "{method} {path} was never refused: {statuses:?}"
        );
    }

    // --- the records those requests wrote --------------------------------------------------
    let mut records = Documented::new(asyncapi, jsonschema::Draft::Draft7);
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut traced = 0;
    let topics: Value = api
        .call("GET", "/api/kafka", "/api/kafka", v, None)
        .await
        .json;
    for row in topics["partitions"].as_array().unwrap() {
        let (topic, partition) = (
            row["topic"].as_str().unwrap(),
            row["partition"].as_i64().unwrap(),
        );
        let path = format!("/api/events?topic={topic}&partition={partition}&limit=200");
        let page = api.call("GET", events, &path, a, None).await;
        for record in page.json["records"].as_array().unwrap() {
            let headers = &record["headers"];
            let event_type = headers["event-type"]
                .as_str()
                .unwrap_or_else(|| panic!("{record}"));
            let message = records.doc["components"]["messages"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(_, m)| m["name"] == event_type)
                .map(|(id, _)| id.clone())
                .unwrap_or_else(|| panic!("no message for {event_type}"));
            let what = format!("{topic}/{partition}@{} ({event_type})", record["offset"]);
            let channel = &records.doc["channels"][topic]["messages"][&message];
            assert!(
                channel.is_object(),
                "{what}: not a message of channel {topic}"
            );
            records.assert_valid(
                &format!("/components/messages/{message}/payload"),
                &record["data"],
                &what,
            );
            records.assert_valid(
                &format!("/components/messages/{message}/headers"),
                headers,
                &what,
            );
            records.assert_valid(
                &format!("/components/messages/{message}/bindings/kafka/key"),
                &record["key"],
                &what,
            );
            assert_eq!(
                record["key"], record["data"]["order_id"],
                "{what}: the key is the order id"
            );
            // Nothing written that the document does not name.
            let payload_name = records.doc["components"]["messages"][&message]["payload"]["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let properties = &records.doc["components"]["schemas"][&payload_name]["properties"];
            for field in record["data"].as_object().unwrap().keys() {
                assert!(
                    properties.get(field).is_some(),
                    "{what}: `{field}` is not in {payload_name}"
                );
            }
            let known = &records.doc["components"]["schemas"]["RecordHeaders"]["properties"];
            for name in headers.as_object().unwrap().keys() {
                assert!(
                    known.get(name).is_some(),
                    "{what}: header `{name}` is not documented"
                );
            }
            if headers["traceparent"]
                .as_str()
                .is_some_and(|t| t.contains("4bf92f3577b34da6a3ce929d0e0e4736"))
            {
                traced += 1;
            }
            *by_type.entry(event_type.to_string()).or_default() += 1;
        }
    }
    for event_type in [
        "order.created",
        "order.cancelled",
        "payment.processed",
        "delivery.created",
        "delivery.updated",
    ] {
        assert!(
            by_type.contains_key(event_type),
            "no {event_type} record read back: {by_type:?}"
        );
    }
    assert_eq!(
        traced, 1,
        "the keyed order's record carries the request's trace"
    );
    let _ = std::fs::remove_dir_all(dir);
}
