//! Routing: one table of (method, path, route) yields both the handler and, for a known path
//! asked with another method, the 405 with its `Allow` header. Unknown paths get 404; both
//! carry the JSON error body.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::value::RawValue;

use crate::messages::api::{
    BrowsedRecord, BrowsedRecords, DeliveryAnswer, ErrorDetail, Health, KafkaOverview, KafkaTopics,
    Listed, OrderAnswer, PartitionRow, Readiness, Replay, StalledPartition, StartReplay,
};

use super::request::{json_body, list_query, query_params};
use super::{ApiError, Request, Response, json_bytes_response, json_response, json_text_response};
use crate::AppState;
use crate::access::{Needed, Principal};
use crate::domain::event::format_time;
use crate::domain::validation::{self, Listing};
use crate::model::store::BackupError;
use crate::shop::Written;

type Answer = Result<Response, ApiError>;

/// What a request asks for, once routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Healthz,
    Readyz,
    Metrics,
    Ws,
    PlaceOrder,
    ListOrders,
    PlaceDemoOrder,
    OrderDetail,
    PayOrder,
    CancelOrder,
    ShipOrder,
    Pay,
    ListPayments,
    Ship,
    ListDeliveries,
    DeliveryDetail,
    AdvanceDelivery,
    Stats,
    Rules,
    Kafka,
    Events,
    Simulator,
    SimulatorSettings,
    Backup,
    Session,
    SignIn,
    SignOut,
    OpenApi,
    AsyncApi,
}

/// The one route table: method, path (a `{id}` segment matches any one segment), route, and
/// the least role that may use it (see [`crate::access`]; the README maps them). A `GET`
/// route answers `HEAD` too. A path that matches with another method is a 405 whose `Allow`
/// header lists the methods of its routes.
pub(super) const ROUTES: &[(&str, &str, Route, Needed)] = &[
    ("GET", "/healthz", Route::Healthz, Needed::Probe),
    ("GET", "/readyz", Route::Readyz, Needed::Probe),
    ("GET", "/metrics", Route::Metrics, Needed::Metrics),
    ("GET", "/ws", Route::Ws, Needed::Viewer),
    ("GET", "/api/session", Route::Session, Needed::Public),
    ("POST", "/api/session", Route::SignIn, Needed::Public),
    ("DELETE", "/api/session", Route::SignOut, Needed::Public),
    ("POST", "/api/orders", Route::PlaceOrder, Needed::Client),
    ("GET", "/api/orders", Route::ListOrders, Needed::Viewer),
    (
        "POST",
        "/api/orders/create",
        Route::PlaceDemoOrder,
        Needed::Client,
    ),
    (
        "GET",
        "/api/orders/{id}",
        Route::OrderDetail,
        Needed::Viewer,
    ),
    (
        "POST",
        "/api/orders/{id}/payments",
        Route::PayOrder,
        Needed::Client,
    ),
    (
        "POST",
        "/api/orders/{id}/cancel",
        Route::CancelOrder,
        Needed::Client,
    ),
    (
        "POST",
        "/api/orders/{id}/deliveries",
        Route::ShipOrder,
        Needed::Client,
    ),
    ("POST", "/api/payments", Route::Pay, Needed::Client),
    ("GET", "/api/payments", Route::ListPayments, Needed::Viewer),
    ("POST", "/api/deliveries", Route::Ship, Needed::Client),
    (
        "GET",
        "/api/deliveries",
        Route::ListDeliveries,
        Needed::Viewer,
    ),
    (
        "GET",
        "/api/deliveries/{id}",
        Route::DeliveryDetail,
        Needed::Viewer,
    ),
    (
        "PATCH",
        "/api/deliveries/{id}",
        Route::AdvanceDelivery,
        Needed::Client,
    ),
    ("GET", "/api/stats", Route::Stats, Needed::Viewer),
    ("GET", "/api/rules", Route::Rules, Needed::Viewer),
    ("GET", "/api/kafka", Route::Kafka, Needed::Viewer),
    ("GET", "/api/events", Route::Events, Needed::Admin),
    ("GET", "/api/simulator", Route::Simulator, Needed::Viewer),
    (
        "POST",
        "/api/simulator",
        Route::SimulatorSettings,
        Needed::Admin,
    ),
    ("POST", "/api/store/backup", Route::Backup, Needed::Admin),
    // The documents describe the API and the records; like the dashboard's files, they hold
    // no data.
    ("GET", "/api/openapi.json", Route::OpenApi, Needed::Public),
    ("GET", "/api/asyncapi.json", Route::AsyncApi, Needed::Public),
];

/// Why a request has no route.
#[derive(Debug, PartialEq, Eq)]
enum Unrouted {
    /// The path has routes, for these methods only.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

/// Finds the route of `method` on the path `segments`, with the path's `{id}` segment.
fn route<'p>(
    method: &Method,
    segments: &[&'p str],
) -> Result<(Route, Needed, Option<&'p str>), Unrouted> {
    let asked = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut allowed = Vec::new();
    for &(route_method, pattern, route, needed) in ROUTES {
        let Some(id) = matches(pattern, segments) else {
            continue;
        };
        if route_method == asked {
            return Ok((route, needed, id));
        }
        if !allowed.contains(&route_method) {
            allowed.push(route_method);
        }
    }
    if allowed.is_empty() {
        return Err(Unrouted::NotFound);
    }
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    Err(Unrouted::MethodNotAllowed(allowed))
}

/// Whether `segments` fit `pattern`; `Some(id)` with the `{id}` segment, if it has one. Every
/// request walks the table, so this allocates nothing.
fn matches<'p>(pattern: &str, segments: &[&'p str]) -> Option<Option<&'p str>> {
    let mut parts = pattern.trim_matches('/').split('/');
    let mut id = None;
    for segment in segments {
        match parts.next()? {
            "{id}" => id = Some(*segment),
            fixed if fixed == *segment => {}
            _ => return None,
        }
    }
    parts.next().is_none().then_some(id)
}

/// Answers one request from `peer`, with the security headers every answer carries; also
/// names the route template it matched (for the access log: `/api/orders/{id}`, never the id).
pub async fn handle(
    state: Arc<AppState>,
    request: Request,
    peer: SocketAddr,
) -> (Response, &'static str) {
    let template = template_of(request.method(), request.uri().path());
    let mut response = answer(state, request, peer).await;
    super::guard::security_headers(response.headers_mut());
    (response, template)
}

/// Every route template [`handle`] can name a request by (the metrics label its requests with
/// them).
pub fn templates() -> impl Iterator<Item = &'static str> {
    ROUTES
        .iter()
        .map(|(_, pattern, _, _)| *pattern)
        .chain(["(file)", "(none)"])
}

/// The route template a request matches: a path of the table, `(file)` for the dashboard's
/// files, `(none)` otherwise.
fn template_of(method: &Method, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match route(method, &segments) {
        Ok((route, _, _)) => ROUTES
            .iter()
            .find(|(_, _, r, _)| *r == route)
            .map_or("(none)", |(_, pattern, _, _)| pattern),
        Err(_) if segments.first().is_some_and(|s| *s != "api") => "(file)",
        Err(_) => "(none)",
    }
}

async fn answer(state: Arc<AppState>, request: Request, peer: SocketAddr) -> Response {
    let head = head_bytes(&request);
    if head > super::MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request line and headers take {head} bytes; at most {} are accepted",
                super::MAX_HEADER_BYTES
            ),
        )
        .into_response();
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let routed = route(&method, &segments);
    let needed = match &routed {
        Ok((_, needed, _)) => *needed,
        // The dashboard's files, 404s and 405s need no credentials, but the host, protected
        // mode and cross-site rules still apply.
        Err(_) => Needed::Public,
    };
    let websocket = matches!(routed, Ok((Route::Ws, _, _)));
    let principal = match super::guard::check(&state, &request, peer, needed, websocket) {
        Ok(principal) => principal,
        Err(refused) => return *refused,
    };
    let (route, id) = match routed {
        Ok((route, _, id)) => (route, id),
        Err(Unrouted::MethodNotAllowed(allowed)) => {
            return ApiError::method_not_allowed(&method, &path, &allowed).into_response();
        }
        Err(Unrouted::NotFound) => {
            let get = method == Method::GET || method == Method::HEAD;
            let answer = match segments.first() {
                Some(first) if get && *first != "api" => super::assets::serve(&request, &path)
                    .ok_or_else(|| ApiError::not_found(format!("no file at {path}"))),
                _ => Err(ApiError::not_found(format!("no route for {method} {path}"))),
            };
            return answer.unwrap_or_else(ApiError::into_response);
        }
    };
    let id = id.unwrap_or_default();
    let who = &principal;
    let answer: Answer = match route {
        Route::Healthz => Ok(healthz(&state)),
        Route::Readyz => readyz(&state, &request),
        Route::Metrics => Ok(super::metrics::render(&state, &request).await),
        Route::Ws => return super::upgrade::handle(state, request, who).await,
        Route::Session => Ok(super::guard::session_view(&state, who)),
        Route::SignIn => super::guard::sign_in(&state, request).await,
        Route::SignOut => Ok(super::guard::sign_out(&state, &request)),
        Route::PlaceOrder => place_order(&state, request, who).await,
        Route::ListOrders => list(&state, &request, Listing::Orders).await,
        Route::PlaceDemoOrder => place_demo_order(&state, request, who).await,
        Route::OrderDetail => order_detail(&state, id).await,
        Route::PayOrder => pay(&state, request, who, Some(id.to_string())).await,
        Route::CancelOrder => cancel(&state, request, who, id).await,
        Route::ShipOrder => ship(&state, request, who, Some(id.to_string())).await,
        Route::Pay => pay(&state, request, who, None).await,
        Route::ListPayments => list(&state, &request, Listing::Payments).await,
        Route::Ship => ship(&state, request, who, None).await,
        Route::ListDeliveries => list(&state, &request, Listing::Deliveries).await,
        Route::DeliveryDetail => delivery_detail(&state, id).await,
        Route::AdvanceDelivery => advance_delivery(&state, request, who, id).await,
        Route::Stats => stats(&state).await,
        Route::Rules => Ok(json_text_response(
            StatusCode::OK,
            crate::messages::api::Rules::json(),
        )),
        Route::Kafka => kafka_overview(&state).await,
        Route::Events => browse_events(&state, &request).await,
        Route::Simulator => Ok(json_response(StatusCode::OK, &state.simulator.view())),
        Route::SimulatorSettings => simulator_settings(&state, request).await,
        Route::Backup => backup(&state).await,
        Route::OpenApi => Ok(json_text_response(StatusCode::OK, super::openapi::json())),
        Route::AsyncApi => Ok(json_text_response(
            StatusCode::OK,
            crate::messages::asyncapi::json(),
        )),
    };
    answer.unwrap_or_else(ApiError::into_response)
}

/// The size of a request's head as sent: its target and every header line.
fn head_bytes(request: &Request) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + target
}

/// The process is alive and serving; says nothing about Kafka (that is `/readyz`).
fn healthz(state: &AppState) -> Response {
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: state.started_at.elapsed().as_secs(),
        },
    )
}

/// 200 only while the broker answers and the topics exist; 503 with the reason otherwise.
/// `?caught_up=true` (a startup probe's) also wants the replay at start to be over: 503
/// `catching_up`, with its progress, until then.
fn readyz(state: &AppState, request: &Request) -> Answer {
    let wants_caught_up = match query_params(request).get("caught_up").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("caught_up is true or false, not `{other}`"),
            ));
        }
    };
    let replay = state.catch_up.get().map(|c| c.progress());
    let caught_up = replay.as_ref().is_some_and(|r| r.caught_up);
    let unavailable = |code, message: &str| {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &Readiness {
                status: "unavailable",
                caught_up: None,
                kafka: None,
                replay: None,
                stalled: Vec::new(),
                error: Some(ErrorDetail {
                    code,
                    message,
                    ..ErrorDetail::default()
                }),
            },
        )
    };
    // Everyone may ask (probes): the answer says what is wrong, never where (paths, broker
    // addresses and error texts are in the log and, for operators, in /api/kafka).
    if state.store.fault().is_some() {
        return Ok(unavailable(
            "store_unavailable",
            "the read model's store cannot be written (a full disk or an unwritable data dir: \
             see the server's log); consumption resumes by itself once it can",
        ));
    }
    // A stalled partition leaves the rest serving: 200, but `degraded`, with the reasons.
    let stalled: Vec<StalledPartition> = state
        .catch_up
        .get()
        .map(|c| c.stalled())
        .unwrap_or_default()
        .into_iter()
        .map(StalledPartition::from)
        .map(|mut stalled| {
            if let Some((kind, _detail)) = stalled.reason.split_once(": ") {
                stalled.reason = format!("{kind} (the reason is in /api/kafka and the log)");
            }
            stalled
        })
        .collect();
    let session = match state.kafka.ready_session() {
        Ok(session) => session,
        Err(error) => return Ok(unavailable("kafka_unavailable", &error.public_message())),
    };
    let kafka = Some(KafkaTopics {
        topics: &session.topics.topics,
    });
    if wants_caught_up && !caught_up {
        let message = replay
            .as_ref()
            .map_or_else(|| "the consumers are starting".to_string(), |r| r.summary());
        return Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &Readiness {
                status: "catching_up",
                caught_up: Some(false),
                kafka,
                replay: replay.map(Replay::from),
                stalled,
                error: Some(ErrorDetail {
                    code: "catching_up",
                    message: &message,
                    ..ErrorDetail::default()
                }),
            },
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &Readiness {
            status: if stalled.is_empty() {
                "ready"
            } else {
                "degraded"
            },
            stalled,
            caught_up: Some(caught_up),
            kafka,
            replay: replay.map(Replay::from),
            error: None,
        },
    ))
}

/// 201 with where the event landed; a repeated `Idempotency-Key` gets the same answer, marked.
fn written(w: Written) -> Response {
    let mut response = json_response(StatusCode::CREATED, &w.body());
    if w.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

async fn place_order(state: &AppState, request: Request, who: &Principal) -> Answer {
    let (body, parts) = json_body(request, state.config.body_timeout).await?;
    let options = parts.write_options(&body, who)?;
    let details = validation::new_order(&body)?;
    Ok(written(state.shop.place_order(details, options).await?))
}

async fn place_demo_order(state: &AppState, request: Request, who: &Principal) -> Answer {
    let (body, parts) = json_body(request, state.config.body_timeout).await?;
    validation::no_body(&body, "this route generates the order itself: send no body")?;
    let options = parts.write_options(&body, who)?;
    Ok(written(state.shop.place_demo_order(options).await?))
}

async fn pay(
    state: &AppState,
    request: Request,
    who: &Principal,
    order_id: Option<String>,
) -> Answer {
    let (body, parts) = json_body(request, state.config.body_timeout).await?;
    let options = parts.write_options(&body, who)?;
    let payment = validation::payment_request(&body, order_id.is_none())?;
    let order_id = order_id.or(payment.order_id.clone()).unwrap_or_default();
    Ok(written(state.shop.pay(&order_id, payment, options).await?))
}

async fn cancel(state: &AppState, request: Request, who: &Principal, order_id: &str) -> Answer {
    let (body, parts) = json_body(request, state.config.body_timeout).await?;
    let options = parts.write_options(&body, who)?;
    let reason = validation::cancel_request(&body)?;
    Ok(written(state.shop.cancel(order_id, reason, options).await?))
}

async fn ship(
    state: &AppState,
    request: Request,
    who: &Principal,
    order_id: Option<String>,
) -> Answer {
    let (body, parts) = json_body(request, state.config.body_timeout).await?;
    let options = parts.write_options(&body, who)?;
    let delivery = validation::delivery_request(&body, order_id.is_none())?;
    let order_id = order_id.or(delivery.order_id.clone()).unwrap_or_default();
    Ok(written(
        state.shop.ship(&order_id, delivery, options).await?,
    ))
}

async fn advance_delivery(
    state: &AppState,
    request: Request,
    who: &Principal,
    delivery_id: &str,
) -> Answer {
    let (body, parts) = json_body(request, state.config.body_timeout).await?;
    let options = parts.write_options(&body, who)?;
    let next = validation::delivery_update(&body)?;
    Ok(written(
        state
            .shop
            .advance_delivery(delivery_id, next, options)
            .await?,
    ))
}

async fn list(state: &AppState, request: &Request, listing: Listing) -> Answer {
    let params = query_params(request);
    let query = list_query(&params, listing)?;
    // Serialised on the blocking thread that read the page.
    let page = state
        .store
        .query(move |view| {
            let status = query.status.clone();
            Ok(match listing {
                Listing::Orders => to_json(&Listed {
                    page: view.list_orders(&query)?,
                    status,
                }),
                Listing::Payments => to_json(&Listed {
                    page: view.list_payments(&query)?,
                    status,
                }),
                Listing::Deliveries => to_json(&Listed {
                    page: view.list_deliveries(&query)?,
                    status,
                }),
            })
        })
        .await?;
    Ok(json_bytes_response(StatusCode::OK, page.into()))
}

fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("answers always serialise")
}

async fn order_detail(state: &AppState, order_id: &str) -> Answer {
    let id = order_id.to_string();
    state
        .store
        .query(move |view| view.order_detail(&id))
        .await?
        .map(|order| json_response(StatusCode::OK, &OrderAnswer { order }))
        .ok_or_else(|| ApiError::not_found(format!("order {order_id} not found")))
}

async fn delivery_detail(state: &AppState, delivery_id: &str) -> Answer {
    let id = delivery_id.to_string();
    state
        .store
        .query(move |view| {
            Ok(view
                .delivery(&id)?
                .map(|d| crate::model::query::delivery_view(&d)))
        })
        .await?
        .map(|delivery| json_response(StatusCode::OK, &DeliveryAnswer { delivery }))
        .ok_or_else(|| ApiError::not_found(format!("delivery {delivery_id} not found")))
}

/// Writes a consistent copy of the store into the data dir's `backups/`, while consumption
/// goes on; the answer names the copy's data dir and the offsets it resumes from.
async fn backup(state: &AppState) -> Answer {
    match state.store.backup().await {
        Ok(report) => Ok(json_response(StatusCode::CREATED, &report)),
        Err(error @ BackupError::Running) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup_running",
            error.to_string(),
        )),
        Err(BackupError::Store(error)) => Err(error.into()),
    }
}

async fn stats(state: &AppState) -> Answer {
    let stats = state.store.query(|view| view.stats(Utc::now())).await?;
    Ok(json_response(StatusCode::OK, &stats))
}

/// Per topic and partition: earliest and latest offsets on the broker, the next offset
/// shopstream will consume, lag in records and seconds, skipped records and offset resets.
async fn kafka_overview(state: &AppState) -> Answer {
    let session = state.kafka.ready_session()?;
    let (broker, error) = crate::kafka::offsets::read(&session, state.config.kafka_timeout).await;
    if let Some(error) = error
        && broker.is_empty()
    {
        return Err(error.into());
    }
    let now = Utc::now();
    let committed = state.store.committed();
    let stalls = state
        .catch_up
        .get()
        .map(|c| c.stalled())
        .unwrap_or_default();
    let partitions: Vec<PartitionRow<'_>> = {
        broker
            .iter()
            .map(|b| {
                let progress = committed.progress(b.topic, b.partition);
                let next = progress.map_or(b.earliest, |p| p.next_offset);
                let lag = b.latest.saturating_sub(next).max(0);
                let lag_seconds = match progress.and_then(|p| p.last_record_time) {
                    Some(last) if lag > 0 => (now - last).num_milliseconds().max(0) as f64 / 1000.0,
                    _ => 0.0,
                };
                PartitionRow {
                    topic: b.topic,
                    topic_name: &session.topics.get(b.topic).name,
                    partition: b.partition,
                    earliest_offset: b.earliest,
                    latest_offset: b.latest,
                    next_offset: next,
                    lag,
                    lag_seconds,
                    skipped: progress.map_or(0, |p| p.skipped),
                    offset_resets: progress.map_or(0, |p| p.resets),
                    unreadable_batches: progress.map_or(0, |p| p.unreadable),
                    aborted_records: progress.map_or(0, |p| p.aborted),
                    stalled: stalls
                        .iter()
                        .find(|s| s.topic == b.topic && s.partition == b.partition)
                        .map(|s| s.reason.clone()),
                    last_record_time: progress.and_then(|p| p.last_record_time).map(format_time),
                }
            })
            .collect()
    };
    Ok(json_response(
        StatusCode::OK,
        &KafkaOverview {
            brokers: &state.config.kafka_brokers,
            caught_up: state.catch_up.get().is_some_and(|c| c.done()),
            start: state.catch_up.get().map(|c| StartReplay {
                from: c.from(),
                replayed_records: c.replayed(),
            }),
            live_clients: state.store.live_clients(),
            partitions,
        },
    ))
}

/// The raw event browser: records of one partition from an offset or a time, read from Kafka.
async fn browse_events(state: &AppState, request: &Request) -> Answer {
    use crate::domain::event::Position;

    let bad = |e: validation::InvalidQuery| ApiError::bad_request("invalid_query", e.0);
    let query = validation::browse_query(&query_params(request)).map_err(bad)?;
    let session = state.kafka.ready_session()?;
    query
        .check_partition(session.topics.get(query.topic).partitions)
        .map_err(bad)?;
    let (topic, partition, limit) = (query.topic, query.partition, query.limit);
    let (records, next_offset) = crate::kafka::offsets::browse(
        &session,
        topic,
        partition,
        query.start,
        limit,
        state.config.kafka_timeout,
    )
    .await?;
    let topic_name = &session.topics.get(topic).name;
    let records: Vec<BrowsedRecord> = records
        .into_iter()
        .map(|r| {
            let position = Position {
                topic,
                partition,
                offset: r.offset,
            };
            let value = r.record.value.as_deref().unwrap_or_default();
            let data = std::str::from_utf8(value)
                .ok()
                .and_then(|text| RawValue::from_string(text.trim().to_owned()).ok());
            let timestamp = format_time(r.record.timestamp);
            let key = r
                .record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            let headers = r
                .record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            let decoded = crate::kafka::records::decode(position, topic_name, r.record).decoded;
            BrowsedRecord {
                offset: r.offset,
                timestamp,
                key,
                headers,
                event_type: decoded.as_ref().ok().map(|(e, _)| e.event_type.as_str()),
                data,
                error: decoded.err().map(|e| e.0),
            }
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &BrowsedRecords {
            topic,
            partition,
            records,
            next_offset,
        },
    ))
}

/// `POST /api/simulator {running?, rate?, payment_failure_rate?}`.
async fn simulator_settings(state: &AppState, request: Request) -> Answer {
    use crate::simulator::{MAX_RATE, MIN_RATE};
    let (body, _) = json_body(request, state.config.body_timeout).await?;
    let settings = validation::simulator_settings(&body, MIN_RATE..=MAX_RATE)?;
    state.simulator.update(
        settings.running,
        settings.rate,
        settings.payment_failure_rate,
    );
    Ok(json_response(StatusCode::OK, &state.simulator.view()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<&str> {
        path.trim_matches('/').split('/').collect()
    }

    #[test]
    fn every_route_of_the_table_is_found_with_its_id() {
        for &(method, pattern, expected, needed) in ROUTES {
            let path = pattern.replace("{id}", "o-42");
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let (found, found_needed, id) = route(&method, &segments(&path)).unwrap();
            assert_eq!(found_needed, needed);
            assert_eq!(found, expected, "{method} {path}");
            assert_eq!(id, pattern.contains("{id}").then_some("o-42"));
        }
    }

    #[test]
    fn head_is_answered_by_the_get_route() {
        assert_eq!(
            route(&Method::HEAD, &segments("/api/orders")),
            Ok((Route::ListOrders, Needed::Viewer, None))
        );
    }

    #[test]
    fn a_known_path_with_another_method_lists_the_methods_it_answers() {
        assert_eq!(
            route(&Method::DELETE, &segments("/api/orders")),
            Err(Unrouted::MethodNotAllowed(vec!["POST", "GET", "HEAD"]))
        );
        assert_eq!(
            route(&Method::GET, &segments("/api/store/backup")),
            Err(Unrouted::MethodNotAllowed(vec!["POST"]))
        );
        assert_eq!(
            route(&Method::PUT, &segments("/api/deliveries/d-1")),
            Err(Unrouted::MethodNotAllowed(vec!["GET", "PATCH", "HEAD"]))
        );
        let response =
            ApiError::method_not_allowed(&Method::PUT, "/api/deliveries/d-1", &["GET", "PATCH"])
                .into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[hyper::header::ALLOW], "GET, PATCH");
    }

    #[test]
    fn an_unknown_path_is_not_found() {
        for path in ["/api/nope", "/api/orders/o-1/refund", "/index.html", "/api"] {
            assert_eq!(
                route(&Method::GET, &segments(path)),
                Err(Unrouted::NotFound),
                "{path}"
            );
        }
    }
}
