//! Leases on background work (`billing_db::lease`), on both backends: a
//! held item is nobody else's until it is given back or its lease runs out,
//! its holder takes it again after a restart, and two replicas taking the
//! same items at once split them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use billing_db::testing::TestDatabase;
use billing_db::{Db, DbOptions, lease};

const SCHEMA: &str = "CREATE TABLE job_leases (job TEXT NOT NULL, item TEXT NOT NULL, \
    holder TEXT NOT NULL, until_us BIGINT NOT NULL, PRIMARY KEY (job, item))";

async fn open(test_db: &TestDatabase) -> Db {
    let db = Db::connect(test_db.url(), &DbOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.unwrap();
    db
}

fn items(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("item-{i}")).collect()
}

async fn a_lease_keeps_others_off_until_given_back_or_run_out(test_db: TestDatabase) {
    let db = open(&test_db).await;
    let all = items(0..4);
    assert_eq!(
        lease::take(&db, "close", &all[..2], "a", 100, 200)
            .await
            .unwrap(),
        all[..2]
    );
    // b gets only what a does not hold; another job's items are separate.
    assert_eq!(
        lease::take(&db, "close", &all, "b", 150, 250)
            .await
            .unwrap(),
        all[2..]
    );
    assert_eq!(
        lease::take(&db, "expire", &all[..1], "b", 150, 250)
            .await
            .unwrap(),
        all[..1]
    );
    // a holds its items again (a restarted holder of the same name).
    assert_eq!(
        lease::take(&db, "close", &all[..2], "a", 150, 300)
            .await
            .unwrap(),
        all[..2]
    );
    // Given back: anyone's at once. Another holder's give-back does nothing.
    lease::give_back(&db, "close", &all[..1], "a")
        .await
        .unwrap();
    lease::give_back(&db, "close", &all[1..2], "b")
        .await
        .unwrap();
    assert_eq!(
        lease::take(&db, "close", &all[..2], "c", 160, 260)
            .await
            .unwrap(),
        all[..1]
    );
    // a's lease on item-1 ran out at 300 (a died): c takes it.
    assert_eq!(
        lease::take(&db, "close", &all[1..2], "c", 300, 400)
            .await
            .unwrap(),
        all[1..2]
    );
    // b's "close" leases ran out at 250 and were forgotten by that take;
    // its "expire" one is given back by a restarted b.
    assert_eq!(lease::give_back_all(&db, "b").await.unwrap(), 1);
    assert_eq!(
        lease::take(&db, "close", &all[2..], "c", 310, 410)
            .await
            .unwrap(),
        all[2..]
    );
    test_db.drop_database().await;
}

async fn replicas_taking_at_once_split_the_items(test_db: TestDatabase) {
    let db = open(&test_db).await;
    let all = items(0..200);
    let (a, b) = tokio::join!(
        lease::take(&db, "resume", &all, "a", 0, 1_000),
        lease::take(&db, "resume", &all, "b", 0, 1_000),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), all.len(), "every item taken once");
    assert!(
        a.iter().all(|item| !b.contains(item)),
        "no item taken twice"
    );
    test_db.drop_database().await;
}

#[tokio::test]
async fn a_lease_keeps_others_off_until_given_back_or_run_out_on_sqlite() {
    a_lease_keeps_others_off_until_given_back_or_run_out(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn a_lease_keeps_others_off_until_given_back_or_run_out_on_postgres() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    a_lease_keeps_others_off_until_given_back_or_run_out(test_db).await;
}

#[tokio::test]
async fn replicas_taking_at_once_split_the_items_on_sqlite() {
    replicas_taking_at_once_split_the_items(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn replicas_taking_at_once_split_the_items_on_postgres() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    replicas_taking_at_once_split_the_items(test_db).await;
}
