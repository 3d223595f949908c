//! The money simulation across services (issue 18): seeded customers with
//! random grants and usage, each invoice finalized (and some voided) while
//! the ledger is killed with SIGKILL at a random moment of the call and
//! started again. The credits on every invoice must be what the
//! independent model (`billing_e2e::model`) applies, exactly once, and the
//! ledger's balances what the model holds (docs/testing.md).
//!
//! Half the invoices are priced in a pricing unit that converts to money
//! (DESIGN §13), its rate changed now and then: the units credits leave
//! uncovered are due in dollars at the rate of the finalize, rounded once,
//! half away from zero.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use billing_e2e::model::{self, ApplyRequest, Ledger, Line, Outcome};
use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_money::{Decimal, round_to_scale};
use billing_proto::common::v1::{Amount, amount::Kind};
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::Backend;
use billing_testkit::fuzz::Rng;

/// Invoices per backend in `cargo test` (`SIM_ROUNDS` for more).
const ROUNDS: u64 = 40;
/// The usd price, in cents per call.
const UNIT_CENTS: i64 = 7;
/// The pricing unit's price, in its smallest units (tenths) per call.
const UNIT_TENTHS: i64 = 13;
/// The pricing unit's scale.
const SCALE: u32 = 1;
/// The unit's rates the run moves between (cents per whole unit).
const RATES: &[&str] = &["1.2", "0.35", "4", "0.05", "2.5"];

/// `value` smallest units of `asset` (`usd`, or a `pu_…` of [`SCALE`]).
fn money(asset: &str, value: i64) -> Option<Amount> {
    billing_testkit::fixtures::amount_in(asset, value, SCALE)
}

fn cents(amount: &Option<Amount>) -> i64 {
    billing_testkit::fixtures::asset_value(amount, SCALE).1
}

/// What `units` (smallest units) are worth at `rate` cents per whole unit:
/// rounded once, half away from zero (DESIGN §13).
fn converted(units: i64, rate: &str) -> i64 {
    let whole = Decimal::from_i128_with_scale(i128::from(units), SCALE);
    round_to_scale(whole * rate.parse::<Decimal>().unwrap(), 0).unwrap()
}

/// What an invoice is priced in.
struct Priced {
    asset: String,
    price: String,
    event: &'static str,
    per_call: i64,
}

fn now() -> i64 {
    billing_server::clock::Clock::system().now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finalize_under_ledger_kills_on_sqlite() {
    simulate(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finalize_under_ledger_kills_on_postgres() {
    simulate(Backend::Postgres).await;
}

async fn simulate(backend: Backend) {
    let Some(dbs) = Databases::new(backend).await else {
        return;
    };
    let seed: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_129);
    let rounds: u64 = std::env::var("SIM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    let ledgers = Restartable::start(
        "credit-ledger",
        vec![("DATABASE_URL", dbs.ledger.url().to_owned())],
    );
    let meter_process = meter(&dbs.meter);
    let invoicing_process = invoicing(&dbs.invoicing, ledgers.addr, meter_process.addr, None);
    let mut c = Clients::new(
        ledgers.channel(),
        meter_process.channel(),
        invoicing_process.channel(),
    );
    let (_, price) = metered_price(&mut c, "sim_calls", &UNIT_CENTS.to_string()).await;
    let mut rate = RATES[0];
    let unit = c
        .ledger
        .create_pricing_unit(authed(ledger::CreatePricingUnitRequest {
            display_name: "Credits".into(),
            scale: SCALE,
            conversion: conversion(rate),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .pricing_unit
        .unwrap()
        .id;
    let unit_meter = sum_meter(&mut c, "sim_tokens", "tokens").await;
    let unit_price = c
        .invoicing
        .create_price(authed(inv::CreatePriceRequest {
            pricing_unit: unit.clone(),
            meter: unit_meter,
            billing_scheme: inv::BillingScheme::PerUnit.into(),
            unit_amount_decimal: UNIT_TENTHS.to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap()
        .id;
    let priced = [
        Priced {
            asset: "usd".into(),
            price,
            event: "sim_calls",
            per_call: UNIT_CENTS,
        },
        Priced {
            asset: unit,
            price: unit_price,
            event: "sim_tokens",
            per_call: UNIT_TENTHS,
        },
    ];
    let mut conversions = 0;

    let mut rng = Rng::new(seed);
    let mut model = Ledger::default();
    let mut kills = 0;
    // Finalizes and voids a kill cut (they needed more than one call).
    let mut cut = 0;
    let started = Instant::now();
    for round in 0..rounds {
        let what = format!("seed {seed} round {round}");
        let customer = customer_named(&mut c, &format!("sim {round}")).await;
        let priced = &priced[rng.below(2)];
        grants(&mut c, &mut rng, &mut model, &customer, priced).await;
        let (invoice, usage) = billed(&mut c, &mut rng, &customer, priced).await;
        if priced.asset != "usd" && rng.chance(30) {
            // A new rate: this invoice's finalize freezes it.
            rate = RATES[rng.below(RATES.len())];
            c.ledger
                .update_pricing_unit(authed(ledger::UpdatePricingUnitRequest {
                    id: priced.asset.clone(),
                    conversion: conversion(rate),
                    ..Default::default()
                }))
                .await
                .unwrap();
        }

        // Finalize while the ledger may die under the call.
        let killer = kill_soon(&ledgers, &mut rng, 40, 25);
        let (finalized, calls) = until_settled(&mut c, &invoice, Step::Finalize).await;
        cut += u64::from(calls > 1);
        if let Some(killer) = killer {
            killer.await.unwrap();
            kills += 1;
        }
        let line = &finalized.lines[0];
        let amount = usage * priced.per_call;
        assert_eq!(cents(&line.amount), amount, "{what}: {line:?}");
        let request = ApplyRequest {
            customer: customer.clone(),
            period_end: finalized.period_end.map_or(0, |t| t.seconds),
            lines: vec![Line {
                id: line.id.clone(),
                price: priced.price.clone(),
                asset: priced.asset.clone(),
                amount,
            }],
        };
        let Outcome::Ok(want) = model.apply(&invoice, &request, &[], false, now()) else {
            panic!("{what}: the model refused the application");
        };
        let mut got: Vec<model::Application> = line
            .credit_applications
            .iter()
            .map(|a| model::Application {
                line: line.id.clone(),
                grant: a.credit_grant.clone(),
                amount: cents(&a.amount),
            })
            .collect();
        let mut want_sorted = want.clone();
        got.sort();
        want_sorted.sort();
        assert_eq!(got, want_sorted, "{what}: credits on {invoice}");
        let credited: i64 = want.iter().map(|a| a.amount).sum();
        assert_eq!(cents(&line.credits_applied), credited, "{what}");
        let uncovered = amount - credited;
        if priced.asset == "usd" {
            assert_eq!(cents(&line.amount_due), uncovered, "{what}");
            assert_eq!(line.conversion, None, "{what}: {line:?}");
        } else {
            // Nothing stays due in the unit: it is due in dollars (the
            // rate is recorded even when credits covered everything).
            assert_eq!(cents(&line.amount_due), 0, "{what}: {line:?}");
            // The uncovered units, due in dollars at the finalize's rate.
            let conversion = line.conversion.clone().unwrap();
            assert_eq!(conversion.unit_amount_decimal, rate, "{what}");
            assert_eq!(cents(&conversion.converted), uncovered, "{what}");
            assert_eq!(
                cents(&conversion.amount_due),
                converted(uncovered, rate),
                "{what}: {uncovered} units at {rate}"
            );
            conversions += u64::from(uncovered > 0);
        }

        // Some open invoices are voided (a paid one cannot be), the ledger
        // again at risk.
        if rng.chance(30) && finalized.status() == inv::InvoiceStatus::Open {
            let killer = kill_soon(&ledgers, &mut rng, 40, 25);
            let (voided, calls) = until_settled(&mut c, &invoice, Step::Void).await;
            cut += u64::from(calls > 1);
            if let Some(killer) = killer {
                killer.await.unwrap();
                kills += 1;
            }
            assert_eq!(voided.status(), inv::InvoiceStatus::Void, "{what}");
            assert!(matches!(model.reverse(&invoice, now()), Outcome::Ok(_)));
        }
        let mut want_available = model.available(&customer, now());
        want_available.retain(|_, v| *v != 0);
        let summary = c
            .ledger
            .get_credit_balance_summary(authed(ledger::GetCreditBalanceSummaryRequest {
                customer: customer.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let mut got_available: BTreeMap<String, i64> = summary
            .balances
            .iter()
            .map(|b| {
                let asset = match b.available_balance.as_ref().and_then(|a| a.kind.as_ref()) {
                    Some(Kind::CustomPricingUnit(u)) => u.id.clone(),
                    _ => "usd".to_owned(),
                };
                (asset, cents(&b.available_balance))
            })
            .collect();
        got_available.retain(|_, v| *v != 0);
        assert_eq!(
            got_available, want_available,
            "{what}: {customer}'s balance"
        );
    }
    println!(
        "{backend:?}: seed {seed}: {rounds} invoices finalized ({conversions} converted, {kills} ledger kills, {cut} calls cut and completed by another) in {:.1} s, 0 violations",
        started.elapsed().as_secs_f64()
    );
    drop(invoicing_process);
    ledgers.stop();
    drop(meter_process);
    dbs.drop_all().await;
}

/// Up to three grants of random shape (some for other prices only).
async fn grants(
    c: &mut Clients,
    rng: &mut Rng,
    model: &mut Ledger,
    customer: &str,
    priced: &Priced,
) {
    let price = priced.price.as_str();
    for _ in 0..rng.below(4) {
        let amount = 1 + rng.below(2_000) as i64;
        let priority = [0, 10, 50][rng.below(3)];
        let promotional = rng.chance(40);
        let expires = if rng.chance(50) {
            None
        } else {
            chrono::DateTime::from_timestamp(4_039_372_800, 0)
        };
        let prices = if rng.chance(20) {
            Some(vec!["price_elsewhere".to_owned()])
        } else if rng.chance(30) {
            Some(vec![price.to_owned()])
        } else {
            None
        };
        let grant = c
            .ledger
            .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
                customer: customer.into(),
                amount: money(&priced.asset, amount),
                applicability_config: Some(ledger::ApplicabilityConfig {
                    scope: Some(ledger::ApplicabilityScope {
                        price_type: if prices.is_none() {
                            ledger::PriceType::Metered.into()
                        } else {
                            0
                        },
                        prices: prices.clone().unwrap_or_default(),
                    }),
                }),
                category: if promotional {
                    ledger::CreditGrantCategory::Promotional.into()
                } else {
                    ledger::CreditGrantCategory::Paid.into()
                },
                priority: Some(priority),
                expires_at: expires.map(billing_server::time::to_proto),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .credit_grant
            .unwrap();
        model.add_grant(
            model::Grant {
                id: grant.id,
                customer: customer.into(),
                asset: priced.asset.clone(),
                amount,
                available: amount,
                applied_total: 0,
                priority,
                promotional,
                effective_at: grant.effective_at.map_or(0, |t| t.seconds),
                expires_at: expires.map(|t| t.timestamp()),
                prices,
                shared: false,
                voided: false,
                expired: false,
                pending: false,
                created: 0,
            },
            now(),
        );
    }
}

/// A monthly subscription to the price with random usage, canceled at
/// once: its final draft invoice and the calls it bills.
async fn billed(c: &mut Clients, rng: &mut Rng, customer: &str, priced: &Priced) -> (String, i64) {
    let price = priced.price.as_str();
    let calls = 1 + rng.below(500) as i64;
    let usage = Usage {
        event: priced.event,
        identifier: format!("evt_{customer}"),
        value: calls,
    };
    let subscription = subscribe_with_usage(c, customer, price, usage).await;
    // Invoicing runs on its test clock: a second later, the period has
    // length and the cancel closes it into a final draft.
    let invoice = cancel_into_drafts(c, vec![subscription]).await.remove(0);
    (invoice, calls)
}

fn conversion(rate: &str) -> Option<ledger::Conversion> {
    Some(ledger::Conversion {
        currency: "usd".into(),
        unit_amount_decimal: rate.into(),
    })
}
