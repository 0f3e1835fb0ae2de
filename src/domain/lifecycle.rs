//! The order lifecycle:
//!
//! ```text
//! Pending ──pay ok──▶ Paid ──ship──▶ Shipped ─▶ In Transit ─▶ Out for Delivery ─▶ Delivered
//!    │  ╲──pay failed──▶ Payment Failed ──pay ok──▶ Paid            (forward moves only;
//!    │                       │    ╲──pay failed (retry)──╯           steps may be skipped)
//!    ╰──cancel──▶ Cancelled ◀╯
//! ```
//!
//! [`transition`] is the one rule book: the API asks it before writing (an illegal command is
//! a 409 that says why) and the read model asks it while applying the log (an event that breaks
//! it, from a foreign producer or a race between two instances, is kept and flagged as an
//! anomaly, and never stops consumption).

use std::fmt;

use super::event::{DeliveryStatus, EventBody, PaymentStatus, normalise};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub enum OrderStatus {
    #[serde(rename = "Pending")]
    Pending,
    #[serde(rename = "Payment Failed")]
    PaymentFailed,
    #[serde(rename = "Paid")]
    Paid,
    #[serde(rename = "Shipped")]
    Shipped,
    #[serde(rename = "In Transit")]
    InTransit,
    #[serde(rename = "Out for Delivery")]
    OutForDelivery,
    #[serde(rename = "Delivered")]
    Delivered,
    #[serde(rename = "Cancelled")]
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Pending,
        OrderStatus::PaymentFailed,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::InTransit,
        OrderStatus::OutForDelivery,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "Pending",
            OrderStatus::PaymentFailed => "Payment Failed",
            OrderStatus::Paid => "Paid",
            OrderStatus::Shipped => "Shipped",
            OrderStatus::InTransit => "In Transit",
            OrderStatus::OutForDelivery => "Out for Delivery",
            OrderStatus::Delivered => "Delivered",
            OrderStatus::Cancelled => "Cancelled",
        }
    }

    /// Accepts `Payment Failed`, `payment_failed`, `PAYMENTFAILED`, ...
    pub fn parse(s: &str) -> Option<Self> {
        let wanted = normalise(s);
        Self::ALL
            .into_iter()
            .find(|o| normalise(o.as_str()) == wanted)
    }

    /// Money was taken for this order (it counts as revenue).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Shipped
                | OrderStatus::InTransit
                | OrderStatus::OutForDelivery
                | OrderStatus::Delivered
        )
    }

    /// A parcel is on its way.
    pub fn is_in_delivery(self) -> bool {
        matches!(
            self,
            OrderStatus::Shipped | OrderStatus::InTransit | OrderStatus::OutForDelivery
        )
    }

    /// The delivery status this order status stands for, while the order is in delivery.
    pub fn delivery_status(self) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|d| OrderStatus::from_delivery(*d) == self)
    }

    fn from_delivery(d: DeliveryStatus) -> Self {
        match d {
            DeliveryStatus::Shipped => OrderStatus::Shipped,
            DeliveryStatus::InTransit => OrderStatus::InTransit,
            DeliveryStatus::OutForDelivery => OrderStatus::OutForDelivery,
            DeliveryStatus::Delivered => OrderStatus::Delivered,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event cannot apply to an order in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// What an event does to an order's lifecycle: all that [`next_status`] needs of it, small
/// enough for the read model to keep one per timeline entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Step {
    Create,
    Cancel,
    Pay(PaymentStatus),
    Deliver(DeliveryStatus),
}

impl Step {
    pub fn of(event: &EventBody) -> Self {
        match event {
            EventBody::OrderCreated(_) => Step::Create,
            EventBody::OrderCancelled { .. } => Step::Cancel,
            EventBody::PaymentProcessed(p) => Step::Pay(p.status),
            EventBody::Delivery(d) => Step::Deliver(d.status),
        }
    }
}

/// The status after `event`, for an order currently in `current` (`None`: not created yet).
pub fn transition(
    current: Option<OrderStatus>,
    event: &EventBody,
) -> Result<OrderStatus, Violation> {
    next_status(current, Step::of(event))
}

/// The status after `step`, for an order currently in `current` (`None`: not created yet).
pub fn next_status(current: Option<OrderStatus>, step: Step) -> Result<OrderStatus, Violation> {
    use OrderStatus::*;
    let Some(current) = current else {
        return match step {
            Step::Create => Ok(Pending),
            _ => Err(Violation("the order does not exist (yet)".into())),
        };
    };
    let refuse = |what: &str| Err(Violation(format!("cannot {what}: the order is {current}")));
    match step {
        Step::Create => Err(Violation("the order was already created".into())),
        Step::Cancel => match current {
            Pending | PaymentFailed => Ok(Cancelled),
            _ => refuse("cancel"),
        },
        Step::Pay(status) => match current {
            Pending | PaymentFailed => Ok(match status {
                PaymentStatus::Success => Paid,
                PaymentStatus::Failed => PaymentFailed,
            }),
            _ => refuse("take a payment"),
        },
        Step::Deliver(status) => {
            let next = OrderStatus::from_delivery(status);
            match current {
                Paid => Ok(next),
                Shipped | InTransit | OutForDelivery if next > current => Ok(next),
                Shipped | InTransit | OutForDelivery => Err(Violation(format!(
                    "a delivery only moves forward: the order is {current}, not before {next}"
                ))),
                Pending | PaymentFailed => refuse("ship before payment"),
                _ => refuse("ship"),
            }
        }
    }
}

/// A command the shop's API takes on an order, each one event of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `POST /api/orders/{id}/payments` (a failed payment may be retried).
    Pay,
    /// `POST /api/orders/{id}/cancel`.
    Cancel,
    /// `POST /api/orders/{id}/deliveries`: the parcel leaves as `Shipped`.
    Ship,
    /// `PATCH /api/deliveries/{id}`: the delivery's next status.
    Advance,
}

/// The delivery status after `status`, `None` once delivered.
pub fn next_delivery_status(status: DeliveryStatus) -> Option<DeliveryStatus> {
    let at = DeliveryStatus::ALL.iter().position(|s| *s == status)?;
    DeliveryStatus::ALL.get(at + 1).copied()
}

/// The commands an order in `status` takes, by [`next_status`]: the dashboard offers exactly
/// these, so it needs no copy of the rules.
pub fn actions(status: OrderStatus) -> Vec<Action> {
    let allowed = |step| next_status(Some(status), step).is_ok();
    let advance = status
        .delivery_status()
        .and_then(next_delivery_status)
        .is_some_and(|next| allowed(Step::Deliver(next)));
    [
        (Action::Pay, allowed(Step::Pay(PaymentStatus::Success))),
        (Action::Cancel, allowed(Step::Cancel)),
        (
            Action::Ship,
            allowed(Step::Deliver(DeliveryStatus::Shipped)),
        ),
        (Action::Advance, advance),
    ]
    .into_iter()
    .filter_map(|(action, ok)| ok.then_some(action))
    .collect()
}

/// Every step of the lifecycle, for the questions asked of [`next_status`] as a whole.
fn all_steps() -> impl Iterator<Item = Step> {
    [
        Step::Create,
        Step::Cancel,
        Step::Pay(PaymentStatus::Success),
        Step::Pay(PaymentStatus::Failed),
    ]
    .into_iter()
    .chain(DeliveryStatus::ALL.into_iter().map(Step::Deliver))
}

/// The statuses reached from `from` (`None`: not created yet) by `steps`, `from` included, in
/// lifecycle order.
fn reachable(from: Option<OrderStatus>, steps: impl Fn(&Step) -> bool) -> Vec<OrderStatus> {
    let mut seen: Vec<OrderStatus> = from.into_iter().collect();
    let mut todo = vec![from];
    while let Some(current) = todo.pop() {
        for step in all_steps().filter(&steps) {
            if let Ok(next) = next_status(current, step)
                && !seen.contains(&next)
            {
                seen.push(next);
                todo.push(Some(next));
            }
        }
    }
    seen.sort();
    seen
}

/// The way of an order that goes well: the statuses reached without a failed payment or a
/// cancellation, in lifecycle order (Pending, Paid, Shipped, ... Delivered).
pub fn way() -> Vec<OrderStatus> {
    reachable(None, |step| {
        !matches!(step, Step::Cancel | Step::Pay(PaymentStatus::Failed))
    })
}

/// The statuses of the orders that reached `status`: on the [`way`], `status` and every status
/// that comes after it (a delivered order was paid and shipped, even when some of its events
/// are missing); off the way (Payment Failed, Cancelled), `status` alone.
pub fn at_or_past(status: OrderStatus) -> Vec<OrderStatus> {
    if way().contains(&status) {
        reachable(Some(status), |_| true)
    } else {
        vec![status]
    }
}

/// The stages of the [`way`]: its statuses in order, those in which an order takes the same
/// commands together (a parcel in any of its delivery statuses takes `advance`).
pub fn stages() -> Vec<Vec<OrderStatus>> {
    let mut stages: Vec<Vec<OrderStatus>> = Vec::new();
    for status in way() {
        match stages.last_mut() {
            Some(stage) if actions(stage[0]) == actions(status) => stage.push(status),
            _ => stages.push(vec![status]),
        }
    }
    stages
}

/// The commands that, in `status`, try again the step that failed and led there (`pay` after
/// a declined payment).
pub fn retried_actions(status: OrderStatus) -> Vec<Action> {
    let after_a_failed_payment = OrderStatus::ALL
        .into_iter()
        .any(|from| next_status(Some(from), Step::Pay(PaymentStatus::Failed)) == Ok(status));
    actions(status)
        .into_iter()
        .filter(|action| *action == Action::Pay && after_a_failed_payment)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{DeliveryDetails, PaymentDetails};
    use crate::domain::money::Money;

    fn pay(ok: bool) -> EventBody {
        EventBody::PaymentProcessed(PaymentDetails {
            payment_id: "p".into(),
            amount: Money::from_minor(100),
            currency: "EUR".into(),
            method: "PayPal".into(),
            status: if ok {
                PaymentStatus::Success
            } else {
                PaymentStatus::Failed
            },
            failure_reason: None,
        })
    }

    fn deliver(status: DeliveryStatus) -> EventBody {
        EventBody::Delivery(DeliveryDetails {
            delivery_id: "d".into(),
            address: "a".into(),
            status,
            estimated_date: None,
            carrier: None,
        })
    }

    fn cancel() -> EventBody {
        EventBody::OrderCancelled { reason: None }
    }

    use OrderStatus::*;

    #[test]
    fn the_happy_path() {
        let mut s = Some(Pending);
        for (event, expected) in [
            (pay(false), PaymentFailed),
            (pay(true), Paid),
            (deliver(DeliveryStatus::Shipped), Shipped),
            (deliver(DeliveryStatus::InTransit), InTransit),
            (deliver(DeliveryStatus::OutForDelivery), OutForDelivery),
            (deliver(DeliveryStatus::Delivered), Delivered),
        ] {
            s = Some(transition(s, &event).unwrap());
            assert_eq!(s, Some(expected));
        }
    }

    #[test]
    fn illegal_moves_say_why() {
        let cases = [
            (Some(Paid), cancel(), "cannot cancel: the order is Paid"),
            (
                Some(Paid),
                pay(true),
                "cannot take a payment: the order is Paid",
            ),
            (
                Some(Pending),
                deliver(DeliveryStatus::Shipped),
                "cannot ship before payment",
            ),
            (Some(Cancelled), pay(true), "the order is Cancelled"),
            (
                Some(Delivered),
                deliver(DeliveryStatus::InTransit),
                "cannot ship: the order is Delivered",
            ),
            (
                Some(InTransit),
                deliver(DeliveryStatus::Shipped),
                "only moves forward",
            ),
            (None, pay(true), "does not exist"),
        ];
        for (state, event, why) in cases {
            let err = transition(state, &event).unwrap_err();
            assert!(err.0.contains(why), "{state:?}: {err} should say {why}");
        }
    }

    #[test]
    fn cancellation_and_skipping_steps() {
        assert_eq!(transition(Some(Pending), &cancel()), Ok(Cancelled));
        assert_eq!(transition(Some(PaymentFailed), &cancel()), Ok(Cancelled));
        assert_eq!(
            transition(Some(Paid), &deliver(DeliveryStatus::Delivered)),
            Ok(Delivered)
        );
    }

    #[test]
    fn status_names() {
        assert_eq!(OrderStatus::parse("payment_failed"), Some(PaymentFailed));
        assert_eq!(OrderStatus::parse("Out for Delivery"), Some(OutForDelivery));
        assert_eq!(OrderStatus::parse("nope"), None);
        assert!(Delivered.is_paid() && !Cancelled.is_paid() && Shipped.is_in_delivery());
    }

    #[test]
    fn each_status_offers_the_commands_its_lifecycle_allows() {
        use Action::*;
        use OrderStatus::*;
        assert_eq!(actions(Pending), vec![Pay, Cancel]);
        assert_eq!(actions(PaymentFailed), vec![Pay, Cancel]);
        assert_eq!(actions(Paid), vec![Ship]);
        assert_eq!(actions(Shipped), vec![Advance]);
        assert_eq!(actions(InTransit), vec![Advance]);
        assert_eq!(actions(OutForDelivery), vec![Advance]);
        assert_eq!(actions(Delivered), vec![]);
        assert_eq!(actions(Cancelled), vec![]);
        assert_eq!(
            next_delivery_status(DeliveryStatus::OutForDelivery),
            Some(DeliveryStatus::Delivered)
        );
        assert_eq!(next_delivery_status(DeliveryStatus::Delivered), None);
    }

    #[test]
    fn the_way_its_stages_and_what_counts_as_having_reached_a_status() {
        assert_eq!(
            way(),
            vec![Pending, Paid, Shipped, InTransit, OutForDelivery, Delivered]
        );
        assert_eq!(
            stages(),
            vec![
                vec![Pending],
                vec![Paid],
                vec![Shipped, InTransit, OutForDelivery],
                vec![Delivered]
            ]
        );
        assert_eq!(
            at_or_past(Pending),
            OrderStatus::ALL.to_vec(),
            "every order"
        );
        assert_eq!(
            at_or_past(Paid),
            vec![Paid, Shipped, InTransit, OutForDelivery, Delivered]
        );
        assert_eq!(
            at_or_past(Shipped),
            vec![Shipped, InTransit, OutForDelivery, Delivered]
        );
        assert_eq!(at_or_past(Delivered), vec![Delivered]);
        assert_eq!(at_or_past(PaymentFailed), vec![PaymentFailed]);
        assert_eq!(at_or_past(Cancelled), vec![Cancelled]);
    }

    #[test]
    fn only_a_declined_payment_is_retried() {
        assert_eq!(retried_actions(PaymentFailed), vec![Action::Pay]);
        for status in OrderStatus::ALL.into_iter().filter(|s| *s != PaymentFailed) {
            assert_eq!(retried_actions(status), vec![], "{status}");
        }
    }
}
