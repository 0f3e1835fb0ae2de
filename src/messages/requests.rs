//! The request bodies the API accepts, as JSON Schemas for `GET /api/openapi.json`.
//!
//! [`crate::domain::validation`] reads each body field by field (so that it can report every
//! problem at once) and stays the authority; these schemas are built from its limits and lists,
//! so the document changes when they do. What a schema cannot say (trimming, email syntax,
//! loose spellings of a status or a payment method) is in the field's description. Every body
//! refuses unknown fields (`422 validation_failed`), and a field set to `null` counts as absent.

use serde_json::{Value, json};

use crate::domain::event::DeliveryStatus;
use crate::domain::gateway::METHODS;
use crate::domain::money::amount_input_schema;
use crate::domain::validation::{
    ADDRESS_MAX, CARRIER_MAX, CURRENCIES, DEFAULT_CURRENCY, EMAIL_MAX, MAX_ORDER_AMOUNT,
    MAX_QUANTITY, NAME_MAX, ORDER_ID_MAX, PRODUCT_MAX, REASON_MAX, SIGN_IN_TOKEN_MAX,
};
use crate::simulator::{MAX_RATE, MIN_RATE};

/// No control characters (C0, DEL, C1): no field of a body is multi-line.
const NO_CONTROL: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";

/// A text field: trimmed, not blank, at most `max` characters.
fn text(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "pattern": NO_CONTROL,
        "description": format!(
            "{description} Trimmed; not blank; at most {max} characters; no control, invisible \
             or bidirectional control characters."
        ),
    })
}

/// An optional field: absent, `null`, or `schema`.
fn nullable(schema: Value) -> Value {
    json!({"oneOf": [{"type": "null"}, schema]})
}

fn object(properties: Value, required: &[&str], description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn amount(max: Option<crate::domain::money::Money>) -> Value {
    serde_json::to_value(amount_input_schema(max)).expect("a schema serialises")
}

/// `POST /api/orders`.
pub fn new_order() -> Value {
    object(
        json!({
            "customer_name": text(NAME_MAX, "The customer's name."),
            "customer_email": {
                "type": "string",
                "format": "email",
                "maxLength": EMAIL_MAX,
                "description": "A practical email address (`a+tag@sub.example.co.uk`; no quoted \
                    local parts or IP literals); its domain is lower-cased. The payment gateway \
                    declines `@decline.test` and `@insufficient.test`.",
            },
            "product": text(PRODUCT_MAX, "What is ordered."),
            "quantity": nullable(json!({
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_QUANTITY,
                "default": 1,
                "description": "How many (a whole number written without a fraction or exponent).",
            })),
            "amount": amount(Some(MAX_ORDER_AMOUNT)),
            "currency": nullable(json!({
                "type": "string",
                "default": DEFAULT_CURRENCY,
                "examples": CURRENCIES,
                "description": format!("One of {}, in any case.", CURRENCIES.join(", ")),
            })),
            "address": text(ADDRESS_MAX, "Where to deliver."),
        }),
        &[
            "customer_name",
            "customer_email",
            "product",
            "amount",
            "address",
        ],
        "A new order. `amount` is the order's total.",
    )
}

fn order_id() -> Value {
    text(ORDER_ID_MAX, "The order.")
}

fn payment_properties(with_order_id: bool) -> Value {
    let mut properties = json!({
        "method": {
            "type": "string",
            "examples": METHODS,
            "description": format!(
                "One of {}, matched loosely (`credit_card` is `Credit Card`).",
                METHODS.join(", ")
            ),
        },
        "amount": nullable(amount(None)),
    });
    if with_order_id {
        properties["order_id"] = order_id();
    }
    properties
}

/// `POST /api/orders/{id}/payments`.
pub fn payment() -> Value {
    object(
        payment_properties(false),
        &["method"],
        "A payment of the order. An `amount` other than the order's total makes the gateway \
         decline it (`amount_mismatch`).",
    )
}

/// `POST /api/payments`: the seed's route, with the order in the body.
pub fn seed_payment() -> Value {
    object(
        payment_properties(true),
        &["order_id", "method"],
        "A payment of `order_id` (the seed's route).",
    )
}

fn carrier() -> Value {
    nullable(text(
        CARRIER_MAX,
        "The carrier (any name: shops use carriers nobody has heard of); absent: one is chosen.",
    ))
}

/// `POST /api/orders/{id}/deliveries`.
pub fn shipment() -> Value {
    object(
        json!({ "carrier": carrier() }),
        &[],
        "Ship the paid order. No body is the same as `{}`.",
    )
}

/// `POST /api/deliveries`: the seed's route.
pub fn seed_shipment() -> Value {
    object(
        json!({ "order_id": order_id(), "carrier": carrier() }),
        &["order_id"],
        "Ship the paid order `order_id` (the seed's route).",
    )
}

/// `PATCH /api/deliveries/{id}`.
pub fn delivery_update() -> Value {
    let statuses: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
    object(
        json!({
            "status": {
                "type": "string",
                "examples": statuses,
                "description": format!(
                    "The delivery's new status: one of {}, in this spelling or a relaxed one \
                     (`in_transit`, `IN TRANSIT`). Forward only; steps may be skipped.",
                    statuses.join(", ")
                ),
            },
        }),
        &["status"],
        "A delivery's next status.",
    )
}

/// `POST /api/orders/{id}/cancel`.
pub fn cancellation() -> Value {
    object(
        json!({
            "reason": nullable(json!({
                "type": "string",
                "maxLength": REASON_MAX,
                "pattern": NO_CONTROL,
                "description": format!(
                    "Why, at most {REASON_MAX} characters; blank is no reason."
                ),
            })),
        }),
        &[],
        "Cancel the order (Pending or Payment Failed only). No body is the same as `{}`.",
    )
}

/// `POST /api/orders/create`: no body, or an empty object.
pub fn no_fields() -> Value {
    json!({
        "type": "object",
        "maxProperties": 0,
        "description": "This route generates the order itself: send no body (or `{}`).",
    })
}

/// `POST /api/simulator`.
pub fn simulator_settings() -> Value {
    object(
        json!({
            "running": nullable(json!({"type": "boolean", "description": "Start or stop it."})),
            "rate": nullable(json!({
                "type": "number",
                "minimum": MIN_RATE,
                "maximum": MAX_RATE,
                "description": "Order lifecycles started per second.",
            })),
            "payment_failure_rate": nullable(json!({
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The share of payments the simulator makes fail.",
            })),
        }),
        &[],
        "Changes to the traffic simulator; each is optional.",
    )
}

/// `POST /api/session`.
pub fn sign_in() -> Value {
    object(
        json!({
            "token": {
                "type": "string",
                "minLength": 1,
                "maxLength": SIGN_IN_TOKEN_MAX,
                "format": "password",
                "description": "One of the server's access tokens; exchanged for the session cookie.",
            },
        }),
        &["token"],
        "The dashboard's sign-in.",
    )
}
