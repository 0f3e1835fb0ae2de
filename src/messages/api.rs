//! The bodies of the REST API's answers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;

use crate::domain::demo::CARRIERS;
use crate::domain::event::{DeliveryStatus, PaymentStatus, TopicRole};
use crate::domain::gateway::METHODS;
use crate::domain::lifecycle::{Action, OrderStatus, actions, next_delivery_status};
use crate::domain::validation::{CURRENCIES, DEFAULT_CURRENCY};

/// `GET /api/rules`: the shop's vocabulary and lifecycle, from the rules the server itself
/// applies, so that the dashboard holds no copy of them.
#[derive(Debug, Serialize)]
pub struct Rules {
    /// Every order status, in lifecycle order.
    pub order_statuses: Vec<OrderStatus>,
    pub payment_statuses: Vec<&'static str>,
    /// Every delivery status, in the order a parcel goes through them.
    pub delivery_statuses: Vec<DeliveryStatus>,
    /// The commands an order takes in each status (none once it is delivered or cancelled).
    pub actions: BTreeMap<OrderStatus, Vec<Action>>,
    /// The status a delivery moves to when it is advanced.
    pub next_delivery_status: BTreeMap<DeliveryStatus, DeliveryStatus>,
    pub payment_methods: &'static [&'static str],
    pub carriers: &'static [&'static str],
    pub currencies: &'static [&'static str],
    pub default_currency: &'static str,
    pub topics: [TopicRole; 3],
}

impl Rules {
    fn build() -> Rules {
        Rules {
            order_statuses: OrderStatus::ALL.to_vec(),
            payment_statuses: [PaymentStatus::Success, PaymentStatus::Failed]
                .iter()
                .map(|s| s.as_str())
                .collect(),
            delivery_statuses: DeliveryStatus::ALL.to_vec(),
            actions: OrderStatus::ALL.iter().map(|&s| (s, actions(s))).collect(),
            next_delivery_status: DeliveryStatus::ALL
                .iter()
                .filter_map(|&s| next_delivery_status(s).map(|next| (s, next)))
                .collect(),
            payment_methods: &METHODS,
            carriers: &CARRIERS,
            currencies: &CURRENCIES,
            default_currency: DEFAULT_CURRENCY,
            topics: TopicRole::ALL,
        }
    }

    /// The document as JSON text, built once.
    pub fn json() -> &'static str {
        static JSON: OnceLock<String> = OnceLock::new();
        JSON.get_or_init(|| serde_json::to_string(&Rules::build()).expect("rules serialise"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_rules_document_names_statuses_actions_and_vocabulary() {
        let rules: Value = serde_json::from_str(Rules::json()).unwrap();
        assert_eq!(rules["order_statuses"][1], "Payment Failed");
        assert_eq!(rules["delivery_statuses"][3], "Delivered");
        assert_eq!(
            rules["actions"]["Pending"],
            serde_json::json!(["pay", "cancel"])
        );
        assert_eq!(rules["actions"]["Paid"], serde_json::json!(["ship"]));
        assert_eq!(rules["actions"]["Delivered"], serde_json::json!([]));
        assert_eq!(
            rules["next_delivery_status"]["In Transit"],
            "Out for Delivery"
        );
        assert_eq!(rules["next_delivery_status"].get("Delivered"), None);
        assert_eq!(
            rules["payment_statuses"],
            serde_json::json!(["SUCCESS", "FAILED"])
        );
        assert_eq!(rules["currencies"][0], "EUR");
        assert_eq!(rules["default_currency"], "EUR");
        assert_eq!(rules["carriers"][0], "Colissimo");
        assert_eq!(
            rules["topics"],
            serde_json::json!(["orders", "payments", "deliveries"])
        );
    }
}
