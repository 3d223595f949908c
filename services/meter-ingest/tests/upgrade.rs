//! A database written under the first schema (0001: text series keys)
//! keeps every event, bucket and dedupe identifier through 0002 (integer
//! series ids), on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_db::{Db, DbOptions};
use billing_proto::meter::v1 as pb;
use billing_testkit::Backend;
use chrono::TimeDelta;
use common::{KEY_A, TestMeter, authed, event, t0};

/// Rows as 0001 stored them: two events of cus_1 in one hour (and their
/// bucket), one cancelled event of cus_2 (no bucket).
fn legacy_rows(hour_us: i64) -> Vec<String> {
    let (e1, e2, e3) = (
        hour_us + 60_000_000,
        hour_us + 600_000_000,
        hour_us + 900_000_000,
    );
    vec![
        format!(
            "INSERT INTO meters VALUES ('acct_a', 'mtr_legacy', 'api_calls', 'API calls', 'sum', 'customer', \
             'value', 'active', {hour_us}, {hour_us})"
        ),
        format!(
            "INSERT INTO meter_events VALUES \
             ('acct_a', 'old-1', 'mtr_legacy', 'cus_1', '2.5', {e1}, '{{}}', {e1}, NULL), \
             ('acct_a', 'old-2', 'mtr_legacy', 'cus_1', '4', {e2}, '{{}}', {e2}, NULL), \
             ('acct_a', 'old-3', 'mtr_legacy', 'cus_2', '7', {e3}, '{{}}', {e3}, {e3})"
        ),
        format!(
            "INSERT INTO usage_buckets VALUES \
             ('acct_a', 'mtr_legacy', 'cus_1', {hour_us}, 2, '6.5', '4', {e2}, 'old-2', '4')"
        ),
    ]
}

async fn upgrade(backend: Backend) {
    let Some(db) = backend.database().await else {
        return;
    };
    let old = Db::connect(db.url(), &DbOptions::default()).await.unwrap();
    old.migrate_to(&meter_ingest::MIGRATIONS, 1).await.unwrap();
    let hour = t0() - TimeDelta::hours(2);
    for sql in legacy_rows(hour.timestamp_micros()) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(old.pool())
            .await
            .unwrap();
    }
    old.close().await;

    let t = TestMeter::start_on(db).await;
    let whole = |c| t.total("mtr_legacy", c, hour, t0());
    assert_eq!(whole("cus_1").await, "6.5");
    assert_eq!(whole("cus_2").await, "0");
    // A window cutting the hour reads the raw events through the series index.
    let cut = t
        .total("mtr_legacy", "cus_1", hour + TimeDelta::minutes(5), t0())
        .await;
    assert_eq!(cut, "4");

    // Dedupe survived: the old identifier is a duplicate, a new one adds.
    let sent = t
        .ingest(vec![
            event("api_calls", "old-1", hour, "cus_1", "100"),
            event("api_calls", "new-1", hour, "cus_1", "1"),
        ])
        .await;
    assert_eq!((sent.accepted, sent.duplicate), (1, 1));
    assert_eq!(whole("cus_1").await, "7.5");

    // Cancelling a pre-upgrade event rebuilds its bucket from raw events.
    t.client()
        .cancel_event(authed(
            KEY_A,
            pb::CancelEventRequest {
                identifier: "old-2".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(whole("cus_1").await, "3.5");
    billing_testkit::Harness::stop(t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrade_keeps_events_buckets_and_dedupe() {
    upgrade(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrade_keeps_events_buckets_and_dedupe() {
    upgrade(Backend::Postgres).await;
}
