//! The credit liability report and the ledger export (DESIGN.md §13):
//! three periods with purchases at two cost bases, a free allocation,
//! applications, a voided invoice, a voided grant and expiries reconcile
//! to the cent with a table computed by hand; the export of a period sums
//! to the report's movements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::common::v1 as cm;
use billing_proto::ledger::v1 as pb;
use billing_testkit::bad_request_fields;
use chrono::{DateTime, TimeZone, Utc};
use common::*;
use tokio_stream::StreamExt;

backends!(
    the_liability_report_reconciles_with_a_hand_computed_table,
    the_export_of_a_period_sums_to_the_report,
    bad_report_and_export_requests_are_refused,
    the_audit_catches_history_that_does_not_match_the_grants,
);

fn day(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()
}

fn credits(unit: &str, value: i64) -> Option<cm::Amount> {
    Some(cm::Amount {
        kind: Some(cm::amount::Kind::CustomPricingUnit(
            cm::CustomPricingUnitAmount {
                id: unit.into(),
                value: value.to_string(),
            },
        )),
    })
}

fn units_of(amount: &Option<cm::Amount>) -> i64 {
    match amount.as_ref().and_then(|a| a.kind.as_ref()) {
        Some(cm::amount::Kind::CustomPricingUnit(p)) => p.value.parse().unwrap(),
        other => panic!("not a pricing unit amount: {other:?}"),
    }
}

fn cents(amount: &Option<cm::Amount>) -> Option<i64> {
    amount.as_ref().map(|_| value_of(amount))
}

/// A grant of `value` credits effective now, with a cost basis in cents a
/// credit when bought.
async fn grant(
    t: &TestLedger,
    (customer, unit): (&str, &str),
    value: i64,
    cost: Option<&str>,
    expires: Option<DateTime<Utc>>,
) -> String {
    create_grant(
        t,
        pb::CreateCreditGrantRequest {
            customer: customer.into(),
            name: "report".into(),
            amount: credits(unit, value),
            applicability_config: metered(),
            category: if cost.is_some() {
                pb::CreditGrantCategory::Paid
            } else {
                pb::CreditGrantCategory::Promotional
            }
            .into(),
            expires_at: expires.and_then(ts),
            cost_basis: cost.map(|c| pb::CostBasis {
                currency: "usd".into(),
                unit_amount_decimal: c.into(),
            }),
            ..Default::default()
        },
    )
    .await
    .id
}

async fn apply(t: &TestLedger, (customer, unit): (&str, &str), invoice: &str, value: i64) {
    let outcome = t
        .client()
        .apply_credits(authed(
            KEY_A,
            apply_request(
                t,
                customer,
                invoice,
                vec![pb::InvoiceLine {
                    invoice_line_item: format!("{invoice}_l"),
                    price: "price_api".into(),
                    amount: credits(unit, value),
                }],
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(units_of(&outcome.totals[0].credits_applied), value);
}

async fn expire(t: &TestLedger, id: &str) {
    t.client()
        .expire_credit_grant(authed(
            KEY_A,
            pb::ExpireCreditGrantRequest {
                id: id.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
}

async fn report(
    t: &TestLedger,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<pb::CreditLiabilityRow> {
    t.client()
        .get_credit_liability_report(authed(
            KEY_A,
            pb::GetCreditLiabilityReportRequest {
                from: ts(from),
                to: ts(to),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .rows
}

/// The story, in a pricing unit of scale 0, one customer per grant so the
/// application order is not in question:
/// - January: A buys 1,000 at 1.5¢ (expires Feb 20), B gets 300 free
///   (expires Mar 10), C buys 500 at 2¢; A's invoice takes 333.
/// - February: C's invoice takes 125, B's 100; A's invoice is voided (333
///   back); C buys 200 at 1.5¢ and that grant is voided; A's grant expires
///   with 1,000 left.
/// - March: B's invoice takes 50; B's grant expires with 150 left; C buys
///   400 at 2¢.
async fn story(t: &TestLedger) -> String {
    let unit = t
        .client()
        .create_pricing_unit(authed(
            KEY_A,
            pb::CreatePricingUnitRequest {
                display_name: "Credits".into(),
                scale: 0,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .pricing_unit
        .unwrap()
        .id;
    let (a, b, c) = (
        ("cus_a", unit.as_str()),
        ("cus_b", unit.as_str()),
        ("cus_c", unit.as_str()),
    );
    t.clock.set(day(1, 15));
    let g1 = grant(t, a, 1_000, Some("1.5"), Some(day(2, 20))).await;
    let g2 = grant(t, b, 300, None, Some(day(3, 10))).await;
    grant(t, c, 500, Some("2"), None).await;
    t.clock.set(day(1, 20));
    apply(t, a, "in_a1", 333).await;
    t.clock.set(day(2, 5));
    apply(t, c, "in_c1", 125).await;
    apply(t, b, "in_b1", 100).await;
    t.clock.set(day(2, 10));
    reverse(t, "in_a1").await.unwrap();
    t.clock.set(day(2, 12));
    let g4 = grant(t, c, 200, Some("1.5"), None).await;
    t.client()
        .void_credit_grant(authed(
            KEY_A,
            pb::VoidCreditGrantRequest {
                id: g4,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    t.clock.set(day(2, 19));
    expire(t, &g1).await;
    t.clock.set(day(3, 5));
    apply(t, b, "in_b2", 50).await;
    t.clock.set(day(3, 9));
    expire(t, &g2).await;
    t.clock.set(day(3, 20));
    grant(t, c, 400, Some("2"), None).await;
    unit
}

/// (currency, opening, purchased, cost, free, applied, revenue, expired,
/// breakage, voided, voided cost, closing); money None for free credits.
type Row = (
    &'static str,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
);

fn figures(row: &pb::CreditLiabilityRow) -> Row {
    let currency: &'static str = match row.cost_basis_currency.as_str() {
        "" => "",
        "usd" => "usd",
        other => panic!("unexpected currency {other}"),
    };
    (
        currency,
        units_of(&row.opening),
        units_of(&row.purchased),
        cents(&row.purchased_cost),
        units_of(&row.granted_free),
        units_of(&row.applied),
        cents(&row.recognized_revenue),
        units_of(&row.expired),
        cents(&row.breakage_cost),
        units_of(&row.voided),
        cents(&row.voided_cost),
        units_of(&row.closing),
    )
}

async fn the_liability_report_reconciles_with_a_hand_computed_table(t: &TestLedger) {
    let unit = story(t).await;
    let periods = [
        (day(1, 1), day(2, 1)),
        (day(2, 1), day(3, 1)),
        (day(3, 1), day(4, 1)),
    ];
    // Worked by hand (cents: 333 × 1.5 = 499.5 → 500; 125 × 2 = 250;
    // 1,000 × 1.5 = 1,500; 200 × 1.5 = 300; 400 × 2 = 800).
    let expected: [[Row; 2]; 3] = [
        [
            ("", 0, 0, None, 300, 0, None, 0, None, 0, None, 300),
            (
                "usd",
                0,
                1_500,
                Some(2_500),
                0,
                333,
                Some(500),
                0,
                Some(0),
                0,
                Some(0),
                1_167,
            ),
        ],
        [
            ("", 300, 0, None, 0, 100, None, 0, None, 0, None, 200),
            // Applied: 125 − 333 given back; revenue 250 − 500.
            (
                "usd",
                1_167,
                200,
                Some(300),
                0,
                -208,
                Some(-250),
                1_000,
                Some(1_500),
                200,
                Some(300),
                375,
            ),
        ],
        [
            ("", 200, 0, None, 0, 50, None, 150, None, 0, None, 0),
            (
                "usd",
                375,
                400,
                Some(800),
                0,
                0,
                Some(0),
                0,
                Some(0),
                0,
                Some(0),
                775,
            ),
        ],
    ];
    for ((from, to), rows) in periods.into_iter().zip(expected) {
        let found = report(t, from, to).await;
        assert!(found.iter().all(|r| r.asset == unit));
        let found: Vec<Row> = found.iter().map(figures).collect();
        assert_eq!(found, rows, "period from {from}");
    }
    // The whole quarter at once: the same movements, summed.
    let quarter: Vec<Row> = report(t, day(1, 1), day(4, 1))
        .await
        .iter()
        .map(figures)
        .collect();
    assert_eq!(
        quarter,
        [
            ("", 0, 0, None, 300, 150, None, 150, None, 0, None, 0),
            (
                "usd",
                0,
                2_100,
                Some(3_600),
                0,
                125,
                Some(250),
                1_000,
                Some(1_500),
                200,
                Some(300),
                775
            ),
        ]
    );
    assert_audit_clean(t).await;
}

async fn export(
    t: &TestLedger,
    request: pb::ExportLedgerEntriesRequest,
) -> Result<Vec<pb::ExportLedgerEntriesResponse>, tonic::Status> {
    let mut stream = t
        .client()
        .export_ledger_entries(authed(KEY_A, request))
        .await?
        .into_inner();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    Ok(batches)
}

async fn the_export_of_a_period_sums_to_the_report(t: &TestLedger) {
    story(t).await;
    let (from, to) = (day(2, 1), day(3, 1));
    let batches = export(
        t,
        pb::ExportLedgerEntriesRequest {
            from: ts(from),
            to: ts(to),
            customer: String::new(),
        },
    )
    .await
    .unwrap();
    let entries: Vec<&pb::LedgerEntry> = batches.iter().flat_map(|b| &b.entries).collect();
    // February: two applications, a reinstatement, a grant, its void, an expiry.
    assert_eq!(entries.len(), 6);
    let times: Vec<i64> = entries
        .iter()
        .map(|e| {
            e.transaction
                .as_ref()
                .unwrap()
                .effective_at
                .unwrap()
                .seconds
        })
        .collect();
    assert!(times.is_sorted(), "oldest first: {times:?}");
    // Sum by kind, signed as the report counts them.
    let (mut applied, mut expired, mut voided, mut purchased) = (0, 0, 0, 0);
    for entry in &entries {
        let tx = entry.transaction.as_ref().unwrap();
        match (&tx.credit, &tx.debit) {
            (Some(credit), None) if credit.r#type() == pb::CreditType::CreditsGranted => {
                purchased += units_of(&credit.amount);
                assert_eq!(entry.category(), pb::CreditGrantCategory::Paid);
                assert!(tx.cost_basis.is_some());
            }
            (Some(credit), None) => applied -= units_of(&credit.amount),
            (None, Some(debit)) => match debit.r#type() {
                pb::DebitType::CreditsApplied => applied += units_of(&debit.amount),
                pb::DebitType::CreditsExpired => expired += units_of(&debit.amount),
                pb::DebitType::CreditsVoided => voided += units_of(&debit.amount),
                other => panic!("unexpected debit {other:?}"),
            },
            other => panic!("a transaction is a credit or a debit: {other:?}"),
        }
    }
    let rows = report(t, from, to).await;
    let sum = |f: fn(&pb::CreditLiabilityRow) -> &Option<cm::Amount>| -> i64 {
        rows.iter().map(|r| units_of(f(r))).sum()
    };
    assert_eq!(applied, sum(|r| &r.applied));
    assert_eq!(expired, sum(|r| &r.expired));
    assert_eq!(voided, sum(|r| &r.voided));
    assert_eq!(purchased, sum(|r| &r.purchased));
    // One customer's part only.
    let only_b = export(
        t,
        pb::ExportLedgerEntriesRequest {
            from: ts(from),
            to: ts(to),
            customer: "cus_b".into(),
        },
    )
    .await
    .unwrap();
    let only_b: Vec<_> = only_b.iter().flat_map(|b| &b.entries).collect();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].transaction.as_ref().unwrap().customer, "cus_b");
    // Another account sees none of it.
    let mut stream = t
        .client()
        .export_ledger_entries(authed(
            KEY_B,
            pb::ExportLedgerEntriesRequest {
                from: ts(from),
                to: ts(to),
                customer: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.is_none());
}

async fn bad_report_and_export_requests_are_refused(t: &TestLedger) {
    let error = t
        .client()
        .get_credit_liability_report(authed(
            KEY_A,
            pb::GetCreditLiabilityReportRequest {
                from: ts(day(3, 1)),
                to: ts(day(2, 1)),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&error), ["to"]);
    let error = export(
        t,
        pb::ExportLedgerEntriesRequest {
            from: None,
            to: ts(day(2, 1)),
            customer: "has space".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_request_fields(&error), ["from", "customer"]);
}

async fn the_audit_catches_history_that_does_not_match_the_grants(t: &TestLedger) {
    story(t).await;
    assert_audit_clean(t).await;
    // A transaction written behind the ledger's back: credits no grant holds.
    let db = billing_db::Db::connect(&t.database_url, &billing_db::DbOptions::default())
        .await
        .unwrap();
    let grant: String = sqlx::query_scalar(
        "SELECT id FROM credit_grants WHERE account = 'acct_a' AND customer = 'cus_c' ORDER BY id LIMIT 1",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO credit_balance_transactions (account, id, customer, credit_grant, direction, kind, \
         amount, invoice, invoice_line_item, effective_at_us, created_us) \
         VALUES ('acct_a', 'cbtxn_forged', 'cus_c', $1, 'credit', 'credits_granted', 7, NULL, NULL, $2, $2)",
    )
    .bind(&grant)
    .bind(billing_server::time::to_micros(day(3, 25)))
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
    let audit = t
        .client()
        .audit_ledger(authed(KEY_A, pb::AuditLedgerRequest {}))
        .await
        .unwrap()
        .into_inner();
    let found: Vec<&str> = audit
        .violations
        .iter()
        .map(|v| v.invariant.as_str())
        .collect();
    assert!(found.contains(&"LIABILITY_MATCHES_GRANTS"), "{found:?}");
    // The report still adds up: the forged credit is in its movements.
    let rows = report(t, day(3, 1), day(4, 1)).await;
    assert_eq!(units_of(&rows[1].purchased), 407);
}
