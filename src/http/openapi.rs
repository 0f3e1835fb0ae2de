//! `GET /api/openapi.json`: the REST API as an OpenAPI 3.1 document, built once.
//!
//! Nothing here is written twice. The paths are the route table's ([`super::routes::ROUTES`]),
//! each with the least role of its `Needed` column; the answers' schemas are derived
//! (`utoipa::ToSchema`) from the very structs the handlers serialise (`crate::messages`), the
//! request bodies' from the limits of `crate::domain::validation`
//! ([`crate::messages::requests`]). What is written here is what a type cannot say: which
//! statuses and error codes each route gives, its parameters, and the prose. `describe` matches
//! every [`Route`], so a route added to the table without a description does not compile.
//!
//! `tests/documents.rs` checks the document against the OpenAPI 3.1 meta-schema and every
//! answer a real server gives against the schema of its route and status.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::routes::{ROUTES, Route};
use crate::access::{Needed, Role};
use crate::domain::event::{DeliveryStatus, PaymentStatus, TopicRole};
use crate::domain::lifecycle::OrderStatus;
use crate::domain::validation::{
    BROWSE_DEFAULT_LIMIT, BROWSE_MAX_LIMIT, LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, MAX_IDEMPOTENCY_KEY,
};
use crate::messages::api::{
    BrowsedRecords, DeliveryAnswer, ErrorBody, Health, KafkaOverview, Listed, OrderAnswer,
    Readiness, Rules, SessionView, SignedIn, SimulatorView, Stats, WriteAck,
};
use crate::messages::api::{DeliveryView, OrderSummary, PaymentView};
use crate::messages::requests;
use crate::model::store::BackupReport;

/// The document as JSON text, built on first use.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_string(&document()).expect("the document serialises"))
}

/// The name of the session cookie's security scheme, and of the bearer token's.
const BEARER: &str = "bearerToken";
const COOKIE: &str = "sessionCookie";

/// The component schemas, gathered as the operations refer to them.
#[derive(Default)]
struct Schemas(BTreeMap<String, Value>);

impl Schemas {
    /// A reference to `T`'s schema under its own name, registered with what it refers to.
    fn of<T: ToSchema>(&mut self) -> Value {
        self.named::<T>(&T::name())
    }

    /// A reference to `T`'s schema under `name` (a generic type's instance).
    fn named<T: ToSchema>(&mut self, name: &str) -> Value {
        self.add(name, T::schema());
        let mut referred = Vec::new();
        T::schemas(&mut referred);
        for (name, schema) in referred {
            self.add(&name, schema);
        }
        reference(name)
    }

    fn add(&mut self, name: &str, schema: RefOr<Schema>) {
        self.0
            .entry(name.to_string())
            .or_insert_with(|| serde_json::to_value(schema).expect("a schema serialises"));
    }
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A success answer: status, description, content (media type and schema; `None`: empty).
type Answer = (u16, &'static str, Option<(&'static str, Value)>);

/// What one operation gives besides the errors every operation of its kind gives.
struct Operation {
    tag: &'static str,
    summary: &'static str,
    description: String,
    parameters: Vec<Value>,
    /// The body's schema, and whether a body is required.
    body: Option<(Value, bool)>,
    /// Success answers.
    answers: Vec<Answer>,
    /// This route's own error codes by status.
    errors: Vec<(u16, &'static [&'static str])>,
    /// A shop command: honours `Idempotency-Key` and `?wait=true`, answers 503 while Kafka or
    /// the store cannot take it.
    write: bool,
}

impl Operation {
    fn new(tag: &'static str, summary: &'static str, description: impl Into<String>) -> Self {
        Self {
            tag,
            summary,
            description: description.into(),
            parameters: Vec::new(),
            body: None,
            answers: Vec::new(),
            errors: Vec::new(),
            write: false,
        }
    }

    fn ok(mut self, status: u16, description: &'static str, schema: Value) -> Self {
        self.answers
            .push((status, description, Some(("application/json", schema))));
        self
    }

    fn errors(mut self, status: u16, codes: &'static [&'static str]) -> Self {
        self.errors.push((status, codes));
        self
    }

    fn parameter(mut self, parameter: Value) -> Self {
        self.parameters.push(parameter);
        self
    }

    fn body(mut self, schema: Value, required: bool) -> Self {
        self.body = Some((schema, required));
        self
    }

    /// A shop command writing one event, answered with `answer` (`order`, `payment` or
    /// `delivery`: the record value written).
    fn write(mut self, schemas: &mut Schemas, answer: &str) -> Self {
        self.write = true;
        let ack = schemas.of::<WriteAck<'static>>();
        self.ok(
            201,
            "Kafka acknowledged the event (`acks=all`): the record value written, and where it \
             landed. A replay of an `Idempotency-Key` gets the first answer again, marked \
             `Idempotent-Replayed: true`.",
            json!({ "allOf": [ack, { "required": [answer] }] }),
        )
    }
}

const STORE: &[&str] = &["store_unavailable"];
const KAFKA: &[&str] = &["kafka_unavailable", "kafka_timeout"];
const QUERY: &[&str] = &["invalid_query"];
const NOT_FOUND: &[&str] = &["not_found"];
const ILLEGAL: &[&str] = &["illegal_transition"];

fn path_id(what: &str) -> Value {
    json!({
        "name": "id",
        "in": "path",
        "required": true,
        "description": format!("The {what}'s id."),
        "schema": { "type": "string", "minLength": 1 },
    })
}

fn query(name: &str, description: String, schema: Value) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": description,
        "schema": schema,
    })
}

/// `status`, `q`, `limit` and `cursor` of a listing whose statuses are `statuses`.
fn listing(op: Operation, statuses: &[&str], q: &str) -> Operation {
    op.parameter(query(
        "status",
        format!(
            "Only this status: one of {}, in any case and spacing (`out_for_delivery`); blank \
             for all. The answer's `status` gives it in the server's spelling.",
            statuses.join(", ")
        ),
        json!({ "type": "string", "examples": statuses }),
    ))
    .parameter(query(
        "q",
        format!(
            "Whole words (case-insensitive; a word is a run of letters and digits) that must \
             all be found: {q}. Or a whole id, looked up by key. Prefixes and substrings are \
             not matched; the walk stops after 20,000 candidates with a `next_cursor`."
        ),
        json!({ "type": "string" }),
    ))
    .parameter(query(
        "limit",
        format!("Items per page, 1 to {LIST_MAX_LIMIT}."),
        json!({ "type": "integer", "minimum": 1, "maximum": LIST_MAX_LIMIT, "default": LIST_DEFAULT_LIMIT }),
    ))
    .parameter(query(
        "cursor",
        "Where the page starts: the `next_cursor` of the page before.".to_string(),
        json!({ "type": "string" }),
    ))
    .errors(400, QUERY)
    .errors(503, STORE)
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|&s| name(s)).collect()
}

/// The operation of `route`.
fn describe(route: Route, schemas: &mut Schemas) -> Operation {
    use Operation as Op;
    match route {
        Route::Healthz => Op::new(
            "operations",
            "Liveness",
            "200 while the process serves; says nothing about Kafka (that is `/readyz`). Open \
             to everyone, always: no host, origin or token check applies.",
        )
        .ok(200, "The process serves.", schemas.of::<Health>()),
        Route::Readyz => {
            let readiness = schemas.of::<Readiness<'static>>();
            Op::new(
                "operations",
                "Readiness",
                "200 while the broker answers and the topics exist (`caught_up`: whether the \
                 replay at start is over, `replay`: its progress; `degraded` with the stalled \
                 partitions while one makes no progress), 503 with the reason otherwise. It says \
                 what is wrong, never where. Open to everyone, always.",
            )
            .parameter(query(
                "caught_up",
                "`true` (a startup probe's): also 503 `catching_up`, with the progress, until \
                 the replay at start is over."
                    .to_string(),
                json!({ "type": "string", "enum": ["true", "false", "1", "0", ""] }),
            ))
            .ok(200, "Ready, or degraded.", readiness.clone())
            .ok(
                503,
                "Not ready: `status` is `unavailable` and `error` says why (`kafka_unavailable`, \
                 `store_unavailable`), or `catching_up` while the replay at start goes on and \
                 `?caught_up=true` was asked.",
                readiness,
            )
            .errors(400, QUERY)
        }
        Route::Metrics => {
            let mut op = Op::new(
                "operations",
                "Prometheus metrics",
                "The Prometheus text exposition format (`text/plain; version=0.0.4`), or \
                 OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`) to a scraper \
                 whose `Accept` asks for it.",
            );
            op.answers.push((
                200,
                "The metrics.",
                Some(("text/plain", json!({ "type": "string" }))),
            ));
            op.answers.push((
                200,
                "The metrics.",
                Some(("application/openmetrics-text", json!({ "type": "string" }))),
            ));
            op
        }
        Route::Ws => {
            let mut op = Op::new(
                "live",
                "The live stream (WebSocket)",
                "Upgrades to a WebSocket. The first frame is `hello` with the cursor (the next \
                 offset per partition); then one frame per event: `{type: event, topic, \
                 partition, offset, event_type, event, event_id, key, timestamp, order_status, \
                 seq, data}`. A client that reconnects with `?cursor=` gets what it missed \
                 replayed from Kafka, then `caught_up`; a cursor older than retention gets \
                 `reset` frames; a client that cannot keep up gets `closing` with its cursor. A \
                 session signed in with the cookie ends at its next ping once the cookie is \
                 signed out (close code 1008).",
            )
            .parameter(query(
                "cursor",
                "Where to resume: `topic:partition:next_offset` pairs, comma separated (the \
                 `cursor` of a `hello` or `closing` frame)."
                    .to_string(),
                json!({
                    "type": "string",
                    "pattern": "^([a-z]+:[0-9]+:[0-9]+)(,[a-z]+:[0-9]+:[0-9]+)*$",
                    "examples": ["orders:0:12,orders:1:7,payments:0:3"],
                }),
            ))
            .errors(400, &["bad_cursor", "websocket_required"])
            .errors(426, &["websocket_version"])
            .errors(429, &["too_many_sessions"]);
            op.answers
                .push((101, "Switching to the WebSocket protocol.", None));
            op
        }
        Route::Session => Op::new(
            "session",
            "Who am I",
            "How this server authenticates (`mode`) and who the caller is. The dashboard asks \
             it first and shows its sign-in page when `mode` is `tokens` and the caller is not \
             `authenticated`.",
        )
        .ok(200, "The caller's session.", schemas.of::<SessionView>()),
        Route::SignIn => Op::new(
            "session",
            "Sign in",
            "Exchanges a token for the session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` \
             behind HTTPS, 12 hours), so that the dashboard's scripts never hold the token.",
        )
        .body(requests::sign_in(), true)
        .ok(
            200,
            "Signed in: the cookie is in `Set-Cookie`.",
            schemas.of::<SignedIn>(),
        )
        .errors(401, &["invalid_token"])
        .errors(409, &["sign_in_not_needed"]),
        Route::SignOut => Op::new(
            "session",
            "Sign out",
            "Signs the session out (its cookie is refused from now on, also after a restart) \
             and clears the cookie.",
        )
        .ok(200, "Signed out.", schemas.of::<SessionView>()),
        Route::PlaceOrder => Op::new("orders", "Place an order", "A new order, `Pending`.")
            .body(requests::new_order(), true)
            .write(schemas, "order"),
        Route::PlaceDemoOrder => Op::new(
            "orders",
            "Place a generated order",
            "The seed's one-click route: a realistic generated order.",
        )
        .body(requests::no_fields(), false)
        .write(schemas, "order"),
        Route::ListOrders => {
            let page = schemas.named::<Listed<OrderSummary>>("OrderPage");
            listing(
                Op::new("orders", "List orders", "Newest first, by pages.").ok(
                    200,
                    "A page of orders.",
                    page,
                ),
                &names(&OrderStatus::ALL, OrderStatus::as_str),
                "of the customer's name, email or product",
            )
        }
        Route::OrderDetail => Op::new(
            "orders",
            "An order",
            "The order, its payments and deliveries, and its timeline: every event of the \
             order across the three topics with topic, partition, offset, time and any anomaly.",
        )
        .parameter(path_id("order"))
        .ok(200, "The order.", schemas.of::<OrderAnswer>())
        .errors(404, NOT_FOUND)
        .errors(503, STORE),
        Route::PayOrder => Op::new(
            "payments",
            "Pay an order",
            "A `payment.processed` event; the simulated gateway decides (README: the simulated \
             payment gateway). A declined payment is answered 201 too, with `status: FAILED` \
             and its `failure_reason`; a failed payment may be retried.",
        )
        .parameter(path_id("order"))
        .body(requests::payment(), true)
        .write(schemas, "payment")
        .errors(404, NOT_FOUND)
        .errors(409, ILLEGAL),
        Route::CancelOrder => Op::new(
            "orders",
            "Cancel an order",
            "Only a Pending or Payment Failed order.",
        )
        .parameter(path_id("order"))
        .body(requests::cancellation(), false)
        .write(schemas, "order")
        .errors(404, NOT_FOUND)
        .errors(409, ILLEGAL),
        Route::ShipOrder => Op::new(
            "deliveries",
            "Ship an order",
            "Starts the delivery of a paid order (`delivery.created`, status `Shipped`).",
        )
        .parameter(path_id("order"))
        .body(requests::shipment(), false)
        .write(schemas, "delivery")
        .errors(404, NOT_FOUND)
        .errors(409, ILLEGAL),
        Route::Pay => Op::new(
            "payments",
            "Pay an order (the seed's route)",
            "As `POST /api/orders/{id}/payments`, with `order_id` in the body.",
        )
        .body(requests::seed_payment(), true)
        .write(schemas, "payment")
        .errors(404, NOT_FOUND)
        .errors(409, ILLEGAL),
        Route::ListPayments => {
            let page = schemas.named::<Listed<PaymentView>>("PaymentPage");
            listing(
                Op::new("payments", "List payments", "Newest first, by pages.").ok(
                    200,
                    "A page of payments.",
                    page,
                ),
                &names(&PaymentStatus::ALL, PaymentStatus::as_str),
                "of the payment method",
            )
        }
        Route::Ship => Op::new(
            "deliveries",
            "Ship an order (the seed's route)",
            "As `POST /api/orders/{id}/deliveries`, with `order_id` in the body.",
        )
        .body(requests::seed_shipment(), true)
        .write(schemas, "delivery")
        .errors(404, NOT_FOUND)
        .errors(409, ILLEGAL),
        Route::ListDeliveries => {
            let page = schemas.named::<Listed<DeliveryView>>("DeliveryPage");
            listing(
                Op::new("deliveries", "List deliveries", "Newest first, by pages.").ok(
                    200,
                    "A page of deliveries.",
                    page,
                ),
                &names(&DeliveryStatus::ALL, DeliveryStatus::as_str),
                "of the address and carrier",
            )
        }
        Route::DeliveryDetail => Op::new("deliveries", "A delivery", "One delivery.")
            .parameter(path_id("delivery"))
            .ok(200, "The delivery.", schemas.of::<DeliveryAnswer>())
            .errors(404, NOT_FOUND)
            .errors(503, STORE),
        Route::AdvanceDelivery => Op::new(
            "deliveries",
            "Advance a delivery",
            "Shipped → In Transit → Out for Delivery → Delivered (forward only, steps may be \
             skipped): a `delivery.updated` event.",
        )
        .parameter(path_id("delivery"))
        .body(requests::delivery_update(), true)
        .write(schemas, "delivery")
        .errors(404, NOT_FOUND)
        .errors(409, ILLEGAL),
        Route::Stats => Op::new(
            "shop",
            "Statistics",
            "Counts per status, revenue of paid orders per currency, the payment success \
             ratio, orders and revenue per minute over the last hour.",
        )
        .ok(200, "The statistics.", schemas.of::<Stats>())
        .errors(503, STORE),
        Route::Rules => Op::new(
            "shop",
            "The shop's rules",
            "The statuses in lifecycle order, the commands each order status takes, the next \
             delivery status, payment methods, carriers, currencies and their decimals, topics: \
             the rules the server applies, so that clients hold no copy of them.",
        )
        .ok(200, "The rules.", schemas.of::<Rules>()),
        Route::Kafka => Op::new(
            "kafka",
            "Offsets and lag",
            "Per topic and partition: earliest and latest offsets, the next offset shopstream \
             consumes, lag in records and seconds, skipped records, offset resets, unreadable \
             batches, aborted records, and why a partition is stalled; where the replay at \
             start began.",
        )
        .ok(
            200,
            "The partitions.",
            schemas.of::<KafkaOverview<'static>>(),
        )
        .errors(503, KAFKA),
        Route::Events => Op::new(
            "kafka",
            "Browse raw records",
            "The records of one partition, read from Kafka, from an offset or a time, with their \
             headers and what shopstream reads in them (or why it skips them).",
        )
        .parameter(json!({
            "name": "topic",
            "in": "query",
            "required": true,
            "description": "The topic, by its role (without the prefix).",
            "schema": { "type": "string", "enum": names(&TopicRole::ALL, TopicRole::as_str) },
        }))
        .parameter(query(
            "partition",
            "The partition (it must exist).".to_string(),
            json!({ "type": "integer", "minimum": 0, "default": 0 }),
        ))
        .parameter(query(
            "offset",
            "The first offset to read; not with `time`.".to_string(),
            json!({ "type": "integer", "minimum": 0, "default": 0 }),
        ))
        .parameter(query(
            "time",
            "Read from the first record at or after this RFC 3339 time (from 1970 on); not \
             with `offset`."
                .to_string(),
            json!({ "type": "string", "format": "date-time" }),
        ))
        .parameter(query(
            "limit",
            format!("Most records, 1 to {BROWSE_MAX_LIMIT}."),
            json!({
                "type": "integer",
                "minimum": 1,
                "maximum": BROWSE_MAX_LIMIT,
                "default": BROWSE_DEFAULT_LIMIT,
            }),
        ))
        .ok(200, "The records.", schemas.of::<BrowsedRecords>())
        .errors(400, QUERY)
        .errors(503, KAFKA),
        Route::Simulator => Op::new(
            "simulator",
            "The traffic simulator",
            "Whether it runs, its settings and what it started.",
        )
        .ok(200, "The simulator.", schemas.of::<SimulatorView>()),
        Route::SimulatorSettings => Op::new(
            "simulator",
            "Start, stop or tune the simulator",
            "Each setting is optional; the answer is the simulator afterwards.",
        )
        .body(requests::simulator_settings(), false)
        .ok(200, "The simulator.", schemas.of::<SimulatorView>()),
        Route::Backup => Op::new(
            "operations",
            "Back the store up",
            "A consistent copy of the store, made while shopstream runs, in \
             `<data-dir>/backups/<UTC time>/` (the newest 3 are kept). Start shopstream with \
             `--data-dir` on it to run from the copy.",
        )
        .ok(201, "The backup was written.", schemas.of::<BackupReport>())
        .errors(409, &["backup_running"])
        .errors(503, STORE),
        Route::OpenApi => Op::new(
            "documents",
            "This document",
            "The REST API as OpenAPI 3.1. It holds no data: anyone the server serves may read \
             it.",
        )
        .ok(200, "The OpenAPI document.", json!({ "type": "object" })),
        Route::AsyncApi => Op::new(
            "documents",
            "The records' document",
            "The three topics' records (keys, values, headers) as AsyncAPI 3.0. It holds no \
             data: anyone the server serves may read it.",
        )
        .ok(200, "The AsyncAPI document.", json!({ "type": "object" })),
    }
}

/// The error codes every route of its kind can give, by status, besides its own.
fn common_errors(op: &Operation, needed: Needed) -> BTreeMap<u16, Vec<&'static str>> {
    let mut errors: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    let mut add = |status: u16, codes: &[&'static str]| {
        let list = errors.entry(status).or_default();
        for code in codes {
            if !list.contains(code) {
                list.push(code);
            }
        }
    };
    add(400, &["invalid_host"]);
    add(431, &["headers_too_large"]);
    if needed != Needed::Probe {
        add(400, &["token_in_query"]);
        add(401, &["invalid_token"]);
        add(
            403,
            &[
                "protected_mode",
                "host_not_allowed",
                "cross_origin",
                "not_same_origin",
            ],
        );
    }
    if !matches!(needed, Needed::Probe | Needed::Public) {
        add(401, &["unauthenticated", "invalid_session"]);
        add(403, &["forbidden"]);
    }
    if op.body.is_some() {
        add(400, &["invalid_json", "unreadable_body"]);
        add(408, &["body_timeout"]);
        add(413, &["payload_too_large"]);
        add(415, &["unsupported_media_type"]);
        add(422, &["validation_failed"]);
    }
    if op.write {
        add(400, &["invalid_idempotency_key", "invalid_query"]);
        add(422, &["idempotency_key_reused"]);
        add(
            503,
            &[
                "kafka_unavailable",
                "kafka_timeout",
                "catching_up",
                "store_unavailable",
            ],
        );
        add(504, &["not_visible_yet"]);
    }
    for &(status, codes) in &op.errors {
        add(status, codes);
    }
    errors
}

/// Why a client gets each error status.
fn status_meaning(status: u16) -> &'static str {
    match status {
        400 => "The request cannot be used (a bad parameter, body or header).",
        401 => "No credentials, or credentials that are not valid.",
        403 => "Refused: the role is too low, or a host, origin or protected-mode rule.",
        404 => "No such resource.",
        408 => "The body did not arrive in time (`--body-timeout`).",
        409 => "Not now: the resource's state does not allow it.",
        413 => "The body is larger than 64 KiB.",
        415 => "A body needs a JSON content type (`application/json`, `application/*+json`).",
        422 => "The body was read but cannot be used: every problem is in `fields`.",
        426 => "The WebSocket version is not 13.",
        429 => "Too many live sessions; retry after `Retry-After` seconds.",
        431 => "The request line and headers take more than 16 KiB.",
        503 => {
            "Kafka or the store cannot serve right now; retry (with the same `Idempotency-Key`)."
        }
        504 => {
            "Written to Kafka, but not visible in time (`?wait=true`); `error.kafka` says where."
        }
        _ => "An error.",
    }
}

fn error_response(status: u16, codes: &[&str], error_body: &Value) -> Value {
    let mut response = json!({
        "description": format!(
            "{} Codes: {}.",
            status_meaning(status),
            codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        ),
        "headers": { "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" } },
        "content": { "application/json": { "schema": {
            "allOf": [
                error_body,
                { "properties": { "error": { "properties": { "code": { "enum": codes } } } } },
            ],
        } } },
    });
    let headers = &mut response["headers"];
    match status {
        401 => {
            headers["WWW-Authenticate"] = json!({
                "description": "`Bearer realm=\"shopstream\"` (with `error=\"invalid_token\"` \
                    for a wrong token); a refused cookie is cleared with `Set-Cookie`.",
                "schema": { "type": "string" },
            })
        }
        429 => {
            headers["Retry-After"] = json!({
                "description": "Seconds to wait.",
                "schema": { "type": "integer" },
            })
        }
        _ => {}
    }
    response
}

/// The OpenAPI operation object of `route`.
fn operation(
    method: &str,
    path: &str,
    route: Route,
    needed: Needed,
    schemas: &mut Schemas,
    error_body: &Value,
) -> Value {
    let op = describe(route, schemas);
    let mut parameters: Vec<Value> = op.parameters.clone();
    if op.write {
        parameters.push(json!({ "$ref": "#/components/parameters/Idempotency-Key" }));
        parameters.push(json!({ "$ref": "#/components/parameters/wait" }));
    }
    parameters.push(json!({ "$ref": "#/components/parameters/X-Request-Id" }));
    parameters.push(json!({ "$ref": "#/components/parameters/traceparent" }));

    let mut responses = Map::new();
    for (status, description, content) in &op.answers {
        let key = status.to_string();
        if let (Some(existing), Some((media_type, schema))) = (responses.get_mut(&key), content) {
            // Another media type of the same answer.
            existing["content"][*media_type] = json!({ "schema": schema });
            continue;
        }
        let mut response = json!({
            "description": description,
            "headers": { "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" } },
        });
        if let Some((media_type, schema)) = content {
            response["content"] = json!({ *media_type: { "schema": schema } });
        }
        if op.write {
            response["headers"]["Idempotent-Replayed"] = json!({
                "description": "`true` when this is the answer to an earlier request with the \
                    same `Idempotency-Key` and body: no second event was written.",
                "schema": { "type": "string", "const": "true" },
            });
        }
        responses.insert(key, response);
    }
    for (status, codes) in common_errors(&op, needed) {
        responses.insert(
            status.to_string(),
            error_response(status, &codes, error_body),
        );
    }

    let (least, security) = match needed {
        Needed::Probe => ("none: open to everyone, always", json!([])),
        Needed::Public => (
            "none (host, protected-mode and cross-site rules apply)",
            json!([{}, { BEARER: [] }, { COOKIE: [] }]),
        ),
        _ => {
            let roles = roles_for(needed);
            (
                needed.role_name(),
                json!([{ BEARER: roles.clone() }, { COOKIE: roles }]),
            )
        }
    };
    let mut description = format!("{}\n\nLeast role: {least}.", op.description);
    if method == "GET" {
        description.push_str(" `HEAD` is answered too.");
    }
    let mut operation = json!({
        "tags": [op.tag],
        "summary": op.summary,
        "description": description,
        "operationId": operation_id(method, path),
        "parameters": parameters,
        "responses": responses,
        "security": security,
        "x-least-role": needed.role_name(),
    });
    if let Some((schema, required)) = op.body {
        operation["requestBody"] = json!({
            "required": required,
            "content": { "application/json": { "schema": schema } },
        });
    }
    operation
}

/// The roles that may use a route of `needed`, in a security requirement (OpenAPI 3.1 lets
/// the list of a non-OAuth scheme name the roles it needs).
fn roles_for(needed: Needed) -> Vec<&'static str> {
    Role::ALL
        .iter()
        .filter(|role| role.may(needed))
        .map(|role| role.as_str())
        .collect()
}

/// `getApiOrdersId` for `GET /api/orders/{id}`: unique, since the table has one route per
/// method and path.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for word in path.split(['/', '.', '{', '}']).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    id
}

fn document() -> Value {
    let mut schemas = Schemas::default();
    let error_body = schemas.of::<ErrorBody<'static>>();
    // Write answers carry the record value written (`WriteAck`'s fields refer to them).
    for (name, schema) in crate::messages::record::value_schemas() {
        schemas.add(&name, schema);
    }
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for &(method, path, route, needed) in ROUTES {
        let operation = operation(method, path, route, needed, &mut schemas, &error_body);
        paths
            .entry(path)
            .or_default()
            .insert(method.to_ascii_lowercase(), operation);
    }
    let error = |status: u16, codes: &[&str]| error_response(status, codes, &error_body);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "shopstream",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "E-commerce orders, payments and deliveries on Apache Kafka, live.",
            "description": INFO,
            "license": { "name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0" },
        },
        "servers": [{ "url": "/" }],
        "tags": [
            { "name": "orders", "description": "Orders and their timelines." },
            { "name": "payments", "description": "Payments, decided by the simulated gateway." },
            { "name": "deliveries", "description": "Deliveries, forward only." },
            { "name": "shop", "description": "Statistics and the shop's rules." },
            { "name": "kafka", "description": "The log: offsets, lag, raw records." },
            { "name": "live", "description": "The live stream of events." },
            { "name": "simulator", "description": "The built-in traffic simulator." },
            { "name": "session", "description": "The dashboard's sign-in." },
            { "name": "operations", "description": "Probes, metrics, backups." },
            { "name": "documents", "description": "This document and the records' AsyncAPI document." },
        ],
        "paths": paths,
        "components": {
            "schemas": schemas.0,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>`, one of the tokens configured \
                        with `SHOPSTREAM_TOKENS` or `--tokens-file`, each with a role: `viewer` \
                        (reads, the live stream), `client` (a viewer's rights and every write), \
                        `admin` (everything), `metrics` (`/metrics` only). An operation's \
                        security lists the roles that may use it. A token in the query string is \
                        refused (`400 token_in_query`). With no token configured, only loopback \
                        clients are served, and none is needed.",
                },
                COOKIE: {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": crate::access::SESSION_COOKIE,
                    "description": "The dashboard's session (`POST /api/session` sets it: \
                        `HttpOnly`, `SameSite=Strict`, 12 hours), with its token's role. A \
                        request signed in by it must come from the dashboard itself: writes and \
                        WebSocket upgrades carry a matching `Origin`, reads come same-origin \
                        (`403 not_same_origin` otherwise).",
                },
            },
            "parameters": {
                "Idempotency-Key": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": false,
                    "description": "The same key and body give the same answer (marked \
                        `Idempotent-Replayed: true`) and no second event, even after a restart \
                        or from another instance; the same key with another body is \
                        `422 idempotency_key_reused`. Keys are scoped to the token that used \
                        them, and remembered for `--retention`.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_IDEMPOTENCY_KEY,
                        "pattern": "^[\\x21-\\x7e]+$",
                    },
                },
                "wait": {
                    "name": "wait",
                    "in": "query",
                    "required": false,
                    "description": "`true` (also `1` or empty): answer only once the read model \
                        shows the write (at most 5 s, then `504 not_visible_yet`).",
                    "schema": { "type": "string", "enum": ["true", "false", "1", "0", ""] },
                },
                "X-Request-Id": {
                    "name": "X-Request-Id",
                    "in": "header",
                    "required": false,
                    "description": "The request's id in the access log, echoed back; one is \
                        made when it is absent or not 1 to 128 of `A-Z a-z 0-9 - _ . : / + =`.",
                    "schema": { "type": "string", "pattern": "^[A-Za-z0-9_.:/+=-]{1,128}$" },
                },
                "traceparent": {
                    "name": "traceparent",
                    "in": "header",
                    "required": false,
                    "description": "W3C trace context. The request joins the caller's trace, \
                        and a write's Kafka record carries the request's span in its \
                        `traceparent` header; a malformed one starts a new trace.",
                    "schema": {
                        "type": "string",
                        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$",
                        "examples": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
                    },
                },
            },
            "headers": {
                "X-Request-Id": {
                    "description": "The request's id: the client's `X-Request-Id`, or one made \
                        for it.",
                    "schema": { "type": "string" },
                },
            },
            "responses": {
                "NotFound": error(404, &["not_found"]),
                "MethodNotAllowed": {
                    "description": "The path does not answer this method; `Allow` and \
                        `error.allow` list those it answers. Codes: `method_not_allowed`.",
                    "headers": {
                        "Allow": { "schema": { "type": "string" } },
                        "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" },
                    },
                    "content": { "application/json": { "schema": {
                        "allOf": [
                            error_body,
                            { "properties": { "error": {
                                "required": ["allow"],
                                "properties": { "code": { "const": "method_not_allowed" } },
                            } } },
                        ],
                    } } },
                },
            },
        },
    })
}

const INFO: &str = "shopstream's REST API. Every change is an event in Kafka (topics `orders`, \
`payments`, `deliveries`; their records are described by `/api/asyncapi.json`); the read model \
that answers the reads is built only from the consumed events.\n\n\
**Errors** always have the shape `{\"error\": {\"code\", \"message\"}}`: a stable machine \
`code` and a message a person can act on; validation errors add `field` and `fields` (one \
`{field, message}` per problem, at most 20), a 405 adds `allow`, a 504 adds `kafka`. Each \
operation lists the statuses and codes it can give. An unknown path is `404 not_found` \
(`#/components/responses/NotFound`); a known path asked with another method is \
`405 method_not_allowed` (`#/components/responses/MethodNotAllowed`). Every `GET` answers \
`HEAD` too.\n\n\
**Access.** Bearer tokens with roles, or the dashboard's session cookie; each operation's \
security lists the roles that may use it, and its description names the least. With no token \
configured, only clients on the same machine are served.\n\n\
**Writes** answer `201` only after Kafka acknowledged the record (`acks=all`), with where it \
landed; they honour `Idempotency-Key` and `?wait=true`. While Kafka is unreachable they answer \
`503` within 10 s.\n\n\
**Money** is exact. Answers and records write amounts as JSON numbers with exactly two \
decimals (`999.99`): read them as decimals from their text, not as binary floating point. \
Requests may send a decimal string (`\"999.99\"`) or a number, with at most two decimals and \
no exponent.\n\n\
**Every request** may carry `X-Request-Id` (echoed back) and `traceparent` (carried into the \
Kafka record a write produces).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_table_is_in_the_document_with_its_least_role() {
        let doc: Value = serde_json::from_str(json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for &(method, path, _, needed) in ROUTES {
            let op = &doc["paths"][path][method.to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} is missing");
            assert_eq!(op["x-least-role"], needed.role_name(), "{method} {path}");
            assert!(
                op["responses"]["431"].is_object(),
                "{method} {path}: every route can answer 431"
            );
        }
    }

    #[test]
    fn every_reference_points_at_a_component() {
        let doc: Value = serde_json::from_str(json()).unwrap();
        fn walk(value: &Value, doc: &Value) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.trim_start_matches('#');
                        assert!(doc.pointer(pointer).is_some(), "{target} is missing");
                    }
                    map.values().for_each(|v| walk(v, doc));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
    }

    #[test]
    fn roles_in_security_follow_the_ladder() {
        assert_eq!(roles_for(Needed::Viewer), ["viewer", "client", "admin"]);
        assert_eq!(roles_for(Needed::Metrics), ["metrics", "admin"]);
        assert_eq!(roles_for(Needed::Admin), ["admin"]);
        assert_eq!(operation_id("GET", "/api/orders/{id}"), "getApiOrdersId");
        assert_eq!(
            operation_id("GET", "/api/openapi.json"),
            "getApiOpenapiJson"
        );
    }
}
