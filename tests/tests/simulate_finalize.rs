//! The money simulation across services (issue 18): seeded customers with
//! random grants and usage, each invoice finalized (and some voided) while
//! the ledger is killed with SIGKILL at a random moment of the call and
//! started again. The credits on every invoice must be what the
//! independent model (`billing_e2e::model`) applies, exactly once, and the
//! ledger's balances what the model holds (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use billing_e2e::model::{self, ApplyRequest, Ledger, Line, Outcome};
use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::common::v1::{Amount, MonetaryAmount, amount::Kind};
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_proto::meter::v1 as meter;
use billing_testkit::Backend;
use billing_testkit::fuzz::Rng;

/// Invoices per backend in `cargo test` (`SIM_ROUNDS` for more).
const ROUNDS: u64 = 40;
/// The price, in cents per call.
const UNIT_CENTS: i64 = 7;

fn usd(value: i64) -> Option<Amount> {
    Some(Amount {
        kind: Some(Kind::Monetary(MonetaryAmount {
            currency: "usd".into(),
            value,
        })),
    })
}

fn cents(amount: &Option<Amount>) -> i64 {
    match amount.as_ref().and_then(|a| a.kind.as_ref()) {
        Some(Kind::Monetary(m)) => m.value,
        _ => 0,
    }
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

    let mut rng = Rng::new(seed);
    let mut model = Ledger::default();
    let mut kills = 0;
    // Finalizes and voids a kill cut (they needed more than one call).
    let mut cut = 0;
    let started = Instant::now();
    for round in 0..rounds {
        let what = format!("seed {seed} round {round}");
        let customer = customer_named(&mut c, &format!("sim {round}")).await;
        grants(&mut c, &mut rng, &mut model, &customer, &price).await;
        let invoice = billed(&mut c, &mut rng, &customer, &price).await;

        // Finalize while the ledger may die under the call.
        let killer = kill_soon(&ledgers, &mut rng, 40, 25);
        let (finalized, calls) = until_settled(&mut c, &invoice, Step::Finalize).await;
        cut += u64::from(calls > 1);
        if let Some(killer) = killer {
            killer.await.unwrap();
            kills += 1;
        }
        let line = &finalized.lines[0];
        let request = ApplyRequest {
            customer: customer.clone(),
            period_end: finalized.period_end.map_or(0, |t| t.seconds),
            lines: vec![Line {
                id: line.id.clone(),
                price: price.clone(),
                asset: "usd".into(),
                amount: cents(&line.amount),
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
        assert_eq!(
            cents(&line.amount_due),
            cents(&line.amount) - credited,
            "{what}"
        );

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
            .map(|b| ("usd".to_owned(), cents(&b.available_balance)))
            .collect();
        got_available.retain(|_, v| *v != 0);
        assert_eq!(
            got_available, want_available,
            "{what}: {customer}'s balance"
        );
    }
    println!(
        "{backend:?}: seed {seed}: {rounds} invoices finalized ({kills} ledger kills, {cut} calls cut and completed by another) in {:.1} s, 0 violations",
        started.elapsed().as_secs_f64()
    );
    drop(invoicing_process);
    ledgers.stop();
    drop(meter_process);
    dbs.drop_all().await;
}

/// Up to three grants of random shape (some for other prices only).
async fn grants(c: &mut Clients, rng: &mut Rng, model: &mut Ledger, customer: &str, price: &str) {
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
                amount: usd(amount),
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
                asset: "usd".into(),
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

/// A monthly subscription to `price` with random usage, canceled at once:
/// its final draft invoice.
async fn billed(c: &mut Clients, rng: &mut Rng, customer: &str, price: &str) -> String {
    let subscription = c
        .invoicing
        .create_subscription(authed(inv::CreateSubscriptionRequest {
            customer: customer.into(),
            items: vec![inv::SubscriptionItemInput {
                price: price.into(),
            }],
            billing_interval: inv::BillingInterval::Month.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    let start = subscription.current_period_start.unwrap();
    let at = prost_types::Timestamp {
        seconds: start.seconds,
        nanos: start.nanos + 1_000,
    };
    let accepted = c
        .meter
        .ingest_events(authed(meter::IngestEventsRequest {
            events: vec![meter::MeterEvent {
                event_name: "sim_calls".into(),
                identifier: format!("evt_{customer}"),
                timestamp: Some(at),
                payload: BTreeMap::from([
                    ("customer".to_owned(), customer.to_owned()),
                    ("value".to_owned(), (1 + rng.below(500)).to_string()),
                ]),
            }],
        }))
        .await
        .unwrap()
        .into_inner()
        .accepted;
    assert_eq!(accepted, 1);
    // Invoicing runs on its test clock: a second later, the period has
    // length and the cancel closes it into a final draft.
    let later = clock_now(c).await + chrono::TimeDelta::seconds(1);
    advance(c, later).await;
    c.invoicing
        .cancel_subscription(authed(inv::CancelSubscriptionRequest {
            id: subscription.id,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .final_invoice
        .unwrap()
        .id
}
