//! The built-in traffic simulator: whole order lifecycles (order → payment → delivery steps)
//! driven through the same [`Shop`] commands as the REST API, at a chosen rate, with a chosen
//! share of failing payments. Started from the dashboard (`/api/simulator`) or the command
//! line (`--simulate RATE`).
//!
//! A lifecycle: a generated order; after a short pause a payment (failing for the chosen share
//! of orders, through the gateway's documented `decline.test` rule); a failed payment is
//! retried once or the order cancelled; a paid order ships and moves to In Transit, Out for
//! Delivery and Delivered, a pause between each step. Lifecycles in flight are bounded.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::demo;
use crate::domain::event::DeliveryStatus;
use crate::domain::validation::{DeliveryRequest, PaymentRequest};
use crate::messages::api::{SimulatorCounts, SimulatorView};
use crate::shop::{Shop, WriteOptions};

/// Most lifecycles in flight; past it the simulator skips starts rather than pile up.
const MAX_IN_FLIGHT: usize = 2_000;
pub const MIN_RATE: f64 = 0.1;
pub const MAX_RATE: f64 = 200.0;

/// What the dashboard sets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    pub running: bool,
    /// Lifecycles started per second.
    pub rate: f64,
    /// Share of orders whose payment fails (0..=1).
    pub payment_failure_rate: f64,
}

#[derive(Debug, Default)]
struct Counters {
    orders: AtomicU64,
    payments: AtomicU64,
    deliveries: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicUsize,
}

#[derive(Debug)]
pub struct Simulator {
    settings: watch::Sender<Settings>,
    counters: Arc<Counters>,
    last_error: Mutex<Option<String>>,
}

impl Simulator {
    pub fn new(initial_rate: Option<f64>) -> Self {
        Self {
            settings: watch::channel(Settings {
                running: initial_rate.is_some(),
                rate: initial_rate.unwrap_or(2.0),
                payment_failure_rate: 0.1,
            })
            .0,
            counters: Arc::default(),
            last_error: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> Settings {
        *self.settings.borrow()
    }

    /// Changes the settings; the driving task follows at once.
    pub fn update(
        &self,
        running: Option<bool>,
        rate: Option<f64>,
        failure: Option<f64>,
    ) -> Settings {
        self.settings.send_modify(|s| {
            if let Some(running) = running {
                s.running = running;
            }
            if let Some(rate) = rate {
                s.rate = rate.clamp(MIN_RATE, MAX_RATE);
            }
            if let Some(failure) = failure {
                s.payment_failure_rate = failure.clamp(0.0, 1.0);
            }
        });
        self.settings()
    }

    /// The state as `/api/simulator` shows it.
    pub fn view(&self) -> SimulatorView {
        let s = self.settings();
        let c = &self.counters;
        SimulatorView {
            running: s.running,
            rate: s.rate,
            payment_failure_rate: s.payment_failure_rate,
            in_flight: c.in_flight.load(Ordering::Relaxed) as u64,
            started: SimulatorCounts {
                orders: c.orders.load(Ordering::Relaxed),
                payments: c.payments.load(Ordering::Relaxed),
                deliveries: c.deliveries.load(Ordering::Relaxed),
            },
            errors: c.errors.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Drives lifecycles while running, until shutdown.
    pub async fn run(self: Arc<Self>, shop: Arc<Shop>, shutdown: CancellationToken) {
        let mut settings = self.settings.subscribe();
        loop {
            let current = *settings.borrow_and_update();
            if !current.running {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = settings.changed() => if changed.is_err() { return },
                }
                continue;
            }
            let pause = Duration::from_secs_f64(1.0 / current.rate);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = settings.changed() => continue,
                _ = tokio::time::sleep(pause) => {}
            }
            if self.counters.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT || !shop.can_write()
            {
                continue;
            }
            self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
            let this = Arc::clone(&self);
            let shop = Arc::clone(&shop);
            let shutdown = shutdown.clone();
            let fails = rand::rng().random_bool(current.payment_failure_rate);
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    result = this.lifecycle(&shop, fails) => {
                        if let Err(error) = result {
                            this.counters.errors.fetch_add(1, Ordering::Relaxed);
                            *this.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                        }
                    }
                }
                this.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    async fn lifecycle(&self, shop: &Shop, payment_fails: bool) -> Result<(), String> {
        let mut details = demo::demo_order(&mut rand::rng());
        if payment_fails {
            let local = details
                .customer_email
                .split('@')
                .next()
                .unwrap_or("customer")
                .to_string();
            details.customer_email = format!("{local}@{}", crate::domain::gateway::DECLINE_DOMAIN);
        }
        let order = shop
            .place_order(details, WriteOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        self.counters.orders.fetch_add(1, Ordering::Relaxed);
        let order_id = order.field("order_id").unwrap_or_default();

        let mut attempts = if payment_fails { 2 } else { 1 };
        loop {
            pause(300..1_500).await;
            let method = demo::demo_payment_method(&mut rand::rng()).to_string();
            let payment = shop
                .pay(
                    &order_id,
                    PaymentRequest {
                        order_id: None,
                        method,
                        amount: None,
                    },
                    WriteOptions::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            self.counters.payments.fetch_add(1, Ordering::Relaxed);
            if payment.field("status").as_deref() == Some("SUCCESS") {
                break;
            }
            attempts -= 1;
            if attempts == 0 {
                pause(300..1_000).await;
                if rand::rng().random_bool(0.5) {
                    shop.cancel(
                        &order_id,
                        Some("payment failed".into()),
                        WriteOptions::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
                return Ok(());
            }
        }

        pause(500..2_000).await;
        let carrier = demo::demo_carrier(&mut rand::rng()).to_string();
        let delivery = shop
            .ship(
                &order_id,
                DeliveryRequest {
                    order_id: None,
                    carrier: Some(carrier),
                },
                WriteOptions::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.counters.deliveries.fetch_add(1, Ordering::Relaxed);
        let delivery_id = delivery.field("delivery_id").unwrap_or_default();
        for next in [
            DeliveryStatus::InTransit,
            DeliveryStatus::OutForDelivery,
            DeliveryStatus::Delivered,
        ] {
            pause(1_000..4_000).await;
            shop.advance_delivery(&delivery_id, next, WriteOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

async fn pause(millis: std::ops::Range<u64>) {
    let wait = rand::rng().random_range(millis);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}
