//! The out-of-order-commit hole of DESIGN.md §9, closed: on PostgreSQL a
//! transaction that took its position first but commits last must not be
//! skipped by a reader that already saw a later one.
//!
//! Deterministic: transaction A writes an event and stays open; B writes
//! one and commits. A reader must see nothing yet (B's position is above
//! the oldest running transaction, A); once A commits, it sees A then B.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use billing_db::events::{self, NewEvent, Outbox};
use billing_db::testing::TestDatabase;
use billing_db::{Db, DbOptions};

const SCHEMA: &str = "CREATE TABLE events (account TEXT NOT NULL, position BIGINT NOT NULL, \
    seq BIGINT NOT NULL, id TEXT NOT NULL, event_type TEXT NOT NULL, subject TEXT NOT NULL, \
    data TEXT NOT NULL, created_us BIGINT NOT NULL, PRIMARY KEY (account, position, seq))";

const INDEX: &str = "CREATE INDEX events_by_type ON events (account, event_type, position, seq)";

async fn write(tx: &mut billing_db::Tx, db: &Db, id: &str) {
    let mut outbox = Outbox::new();
    let event = NewEvent {
        event_type: "test.happened",
        subject: id,
        data: "{}".into(),
    };
    outbox.push(id.to_owned(), event);
    outbox.write(tx, db.backend(), "acct", 0).await.unwrap();
}

async fn ids(db: &Db, after: Option<events::Cursor>) -> Vec<String> {
    events::after(db, "acct", after, &[], 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test]
async fn a_late_commit_below_a_seen_position_is_not_skipped_on_postgres() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    let db = Db::connect(test_db.url(), &DbOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.unwrap();
    sqlx::raw_sql(INDEX).execute(db.pool()).await.unwrap();

    let mut first = db.begin_write().await.unwrap();
    write(&mut first, &db, "evt_a").await;
    let mut second = db.begin_write().await.unwrap();
    write(&mut second, &db, "evt_b").await;
    second.commit().await.unwrap();

    // B is committed, but A (a lower position) is still running: serving B
    // now would let a cursor pass A for good.
    assert!(ids(&db, None).await.is_empty());

    first.commit().await.unwrap();
    assert_eq!(ids(&db, None).await, ["evt_a", "evt_b"]);
    let all = events::after(&db, "acct", None, &[], 100).await.unwrap();
    assert_eq!(ids(&db, Some(all[0].cursor)).await, ["evt_b"]);
    db.close().await;
    test_db.drop_database().await;
}

#[tokio::test]
async fn positions_follow_commits_on_sqlite() {
    let test_db = TestDatabase::sqlite();
    let db = Db::connect(test_db.url(), &DbOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.unwrap();
    sqlx::raw_sql(INDEX).execute(db.pool()).await.unwrap();
    for id in ["evt_1", "evt_2", "evt_3"] {
        let mut tx = db.begin_write().await.unwrap();
        write(&mut tx, &db, id).await;
        tx.commit().await.unwrap();
    }
    assert_eq!(ids(&db, None).await, ["evt_1", "evt_2", "evt_3"]);
    db.close().await;
    test_db.drop_database().await;
}
