//! Flat cost benchmark: a customer's reads and applications cost the same in
//! an account of 10,000 rows and in one of 1,000,000 (issue 11, item 11).
//!
//! `cargo bench -p invoicing --bench scale` (or `just bench-scale`). The
//! three services run in-process on PostgreSQL. For each account size the
//! account gets that many invoices (one line and one credit application
//! each), balance transactions and a tenth as many grants, spread over a
//! tenth as many other customers, written straight into the services'
//! tables (then `VACUUM ANALYZE`, as autovacuum would). A fresh target
//! customer of constant size (20 grants, 50 invoices, 200 applications)
//! then takes `BENCH_CALLS` sequential calls of each measured RPC. The same
//! run times the raw SQL of one customer's invoice page as a baseline.
//!
//! `BENCH_SIZES` (default `10000,1000000`) and `BENCH_CALLS` (default
//! 1,000) change the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

/// The test harness: the three services in-process on one backend.
#[path = "../tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::bench::{ms, percentile};
use billing_testkit::fixtures::{grant_request, ts, usd};
use billing_testkit::{Backend, Harness};
use chrono::TimeDelta;
use common::{KEY_A, KEY_A_APPLY, Suite, t0};
use sqlx::postgres::PgPool;

const ACCOUNT: &str = "acct_a";

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// p50 and p99 of `calls` sequential runs of `call` (after 50 unmeasured).
async fn measure<F, Fut>(calls: u64, mut call: F) -> (Duration, Duration)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    for n in 0..50 {
        call(u64::MAX - n).await;
    }
    let mut latencies = Vec::new();
    for n in 0..calls {
        let started = Instant::now();
        call(n).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
}

/// Grows the account's tables from `from` to `to` rows with other customers'
/// invoices, lines, credit applications, grants and balance transactions.
async fn grow(ledger_db: &PgPool, invoicing_db: &PgPool, from: u64, to: u64, scope: &str) {
    let (from, to) = (from as i64, to as i64);
    sqlx::query(
        "INSERT INTO invoices (account, id, customer, subscription, status, billing_reason, \
         period_start_us, period_end_us, created_us, updated_us) \
         SELECT $1, 'in_00BG' || lpad(i::text, 22, '0'), 'cus_bg_' || (i % ($3 / 10 + 1)), \
         'sub_bg_' || (i % ($3 / 10 + 1)), (ARRAY['draft', 'open', 'paid', 'void'])[1 + i % 4], \
         'subscription_cycle', i, i + 1, i, i FROM generate_series($2, $3 - 1) AS i",
    )
    .bind(ACCOUNT)
    .bind(from)
    .bind(to)
    .execute(invoicing_db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO invoice_lines (account, invoice, position, id, price, meter, description, \
         asset, asset_scale, usage, quantity, unit_amount_decimal, amount, credits_applied) \
         SELECT $1, 'in_00BG' || lpad(i::text, 22, '0'), 0, 'il_bg_' || i, 'price_bg', 'mtr_bg', \
         'Usage', 'usd', 2, '10', '10', '1', 1000, 100 FROM generate_series($2, $3 - 1) AS i",
    )
    .bind(ACCOUNT)
    .bind(from)
    .bind(to)
    .execute(invoicing_db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO invoice_credit_applications (account, invoice, position, line, \
         credit_grant, amount, credit_balance_transaction) \
         SELECT $1, 'in_00BG' || lpad(i::text, 22, '0'), 0, 'il_bg_' || i, 'cg_bg', 100, \
         'cbt_bg_' || i FROM generate_series($2, $3 - 1) AS i",
    )
    .bind(ACCOUNT)
    .bind(from)
    .bind(to)
    .execute(invoicing_db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO credit_grants (account, id, customer, name, asset, asset_scale, amount, \
         available, scope, category, priority, effective_at_us, metadata, created_us, updated_us) \
         SELECT $1, 'cg_00BG' || lpad(i::text, 22, '0'), 'cus_bg_' || i, 'Background', 'usd', 2, \
         1000000, 1000000, $4, 'paid', 50, 0, '{}', i, i \
         FROM generate_series($2 / 10, $3 / 10 - 1) AS i",
    )
    .bind(ACCOUNT)
    .bind(from)
    .bind(to)
    .bind(scope)
    .execute(ledger_db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO credit_balance_transactions (account, id, customer, credit_grant, \
         direction, kind, amount, invoice, invoice_line_item, effective_at_us, created_us) \
         SELECT $1, 'cbt_00BG' || lpad(i::text, 22, '0'), 'cus_bg_' || (i % ($3 / 10 + 1)), \
         'cg_00BG' || lpad((i % ($3 / 10 + 1))::text, 22, '0'), 'debit', 'credits_applied', 1, \
         'in_00BG' || lpad(i::text, 22, '0'), 'il_bg_' || i, i, i \
         FROM generate_series($2, $3 - 1) AS i",
    )
    .bind(ACCOUNT)
    .bind(from)
    .bind(to)
    .execute(ledger_db)
    .await
    .unwrap();
    for db in [ledger_db, invoicing_db] {
        sqlx::raw_sql("VACUUM ANALYZE").execute(db).await.unwrap();
    }
}

/// A target customer of constant size: 20 grants, 200 applications (their
/// balance transactions), 50 invoices of one line. Returns its id.
async fn target(s: &Suite, invoicing_db: &PgPool, size: u64) -> String {
    let customer = s.customer(&format!("Target at {size}")).await;
    for n in 0..20 {
        s.grant(grant_request(
            &customer,
            &format!("Grant {n}"),
            1_000_000_000,
        ))
        .await;
    }
    let mut ledger_client = s.ledger.clone();
    for n in 0..200 {
        ledger_client
            .apply_credits(billing_testkit::authed(
                KEY_A_APPLY,
                apply_request(&customer, &format!("in_setup_{size}_{n}")),
            ))
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO invoices (account, id, customer, subscription, status, billing_reason, \
         period_start_us, period_end_us, created_us, updated_us) \
         SELECT $1, 'in_' || $2 || '_' || lpad(i::text, 4, '0'), $2, 'sub_' || $2, 'paid', \
         'subscription_cycle', i, i + 1, i, i FROM generate_series(0, 49) AS i",
    )
    .bind(ACCOUNT)
    .bind(&customer)
    .execute(invoicing_db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO invoice_lines (account, invoice, position, id, price, meter, description, \
         asset, asset_scale, usage, quantity, unit_amount_decimal, amount, credits_applied) \
         SELECT $1, 'in_' || $2 || '_' || lpad(i::text, 4, '0'), 0, 'il_' || i, 'price_t', \
         'mtr_t', 'Usage', 'usd', 2, '10', '10', '1', 1000, 0 FROM generate_series(0, 49) AS i",
    )
    .bind(ACCOUNT)
    .bind(&customer)
    .execute(invoicing_db)
    .await
    .unwrap();
    customer
}

fn apply_request(customer: &str, invoice: &str) -> ledger::ApplyCreditsRequest {
    ledger::ApplyCreditsRequest {
        pool: Vec::new(),
        customer: customer.into(),
        invoice: invoice.into(),
        period_end: ts(t0() + TimeDelta::days(1)),
        lines: vec![ledger::InvoiceLine {
            invoice_line_item: "line_1".into(),
            price: "price_t".into(),
            amount: usd(7),
        }],
        preview: false,
    }
}

#[tokio::main]
async fn main() {
    let sizes = env_list("BENCH_SIZES", &[10_000, 1_000_000]);
    let calls = env_list("BENCH_CALLS", &[1_000])[0];
    let Some(s) = Suite::start(Backend::Postgres).await else {
        eprintln!("PostgreSQL unavailable: skipped");
        return;
    };
    let [ledger_url, _, invoicing_url] = s.database_urls();
    let ledger_db = PgPool::connect(ledger_url).await.unwrap();
    let invoicing_db = PgPool::connect(invoicing_url).await.unwrap();
    let scope_source = s.customer("Scope source").await;
    let scope_grant = s.grant(grant_request(&scope_source, "scope", 1)).await;
    let scope: String = sqlx::query_scalar("SELECT scope FROM credit_grants WHERE id = $1")
        .bind(&scope_grant.id)
        .fetch_one(&ledger_db)
        .await
        .unwrap();

    println!("| rows in the account | call | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let mut grown = 0;
    for size in sizes {
        let started = Instant::now();
        grow(&ledger_db, &invoicing_db, grown, size, &scope).await;
        grown = size;
        let customer = target(&s, &invoicing_db, size).await;
        eprintln!(
            "{size} rows ready in {:.0} s",
            started.elapsed().as_secs_f64()
        );

        let report = |call: &str, (p50, p99): (Duration, Duration)| {
            println!("| {size} | {call} | {:.2} | {:.2} |", ms(p50), ms(p99));
        };
        let invoicing = s.invoicing.clone();
        report(
            "ListInvoices (customer, 20)",
            measure(calls, |_| {
                let mut client = invoicing.clone();
                let customer = customer.clone();
                async move {
                    let page = client
                        .list_invoices(billing_testkit::authed(
                            KEY_A,
                            pb::ListInvoicesRequest {
                                customer,
                                page_size: 20,
                                ..Default::default()
                            },
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(page.invoices.len(), 20);
                }
            })
            .await,
        );
        report(
            "ListInvoices (account, status open, 20)",
            measure(calls, |_| {
                let mut client = invoicing.clone();
                async move {
                    client
                        .list_invoices(billing_testkit::authed(
                            KEY_A,
                            pb::ListInvoicesRequest {
                                status: pb::InvoiceStatus::Open.into(),
                                page_size: 20,
                                ..Default::default()
                            },
                        ))
                        .await
                        .unwrap();
                }
            })
            .await,
        );
        let ledger_client = s.ledger.clone();
        report(
            "ListCreditBalanceTransactions (customer, 20)",
            measure(calls, |_| {
                let mut client = ledger_client.clone();
                let customer = customer.clone();
                async move {
                    let page = client
                        .list_credit_balance_transactions(billing_testkit::authed(
                            KEY_A,
                            ledger::ListCreditBalanceTransactionsRequest {
                                customer,
                                page_size: 20,
                                ..Default::default()
                            },
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(page.credit_balance_transactions.len(), 20);
                }
            })
            .await,
        );
        report(
            "GetCreditBalanceSummary (20 grants)",
            measure(calls, |_| {
                let mut client = ledger_client.clone();
                let customer = customer.clone();
                async move {
                    client
                        .get_credit_balance_summary(billing_testkit::authed(
                            KEY_A,
                            ledger::GetCreditBalanceSummaryRequest {
                                pool: Vec::new(),
                                customer,
                                filter: None,
                                unbilled_lines: Vec::new(),
                            },
                        ))
                        .await
                        .unwrap();
                }
            })
            .await,
        );
        report(
            "ApplyCredits (1 line, 20 grants)",
            measure(calls, |n| {
                let mut client = ledger_client.clone();
                let request = apply_request(&customer, &format!("in_bench_{size}_{n}"));
                async move {
                    client
                        .apply_credits(billing_testkit::authed(KEY_A_APPLY, request))
                        .await
                        .unwrap();
                }
            })
            .await,
        );
        report(
            "baseline: raw SQL of one customer's invoice page",
            measure(calls, |_| {
                let db = invoicing_db.clone();
                let customer = customer.clone();
                async move {
                    let rows: Vec<(String,)> = sqlx::query_as(
                        "SELECT id FROM invoices WHERE account = $1 AND customer = $2 \
                         ORDER BY id DESC LIMIT 21",
                    )
                    .bind(ACCOUNT)
                    .bind(customer)
                    .fetch_all(&db)
                    .await
                    .unwrap();
                    assert_eq!(rows.len(), 21);
                }
            })
            .await,
        );
    }
    ledger_db.close().await;
    invoicing_db.close().await;
    s.stop().await;
}
