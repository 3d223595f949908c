//! Write transactions on both backends: what is not committed is never
//! seen, whether the transaction was rolled back, dropped after an error or
//! cancelled mid-statement; on SQLite the one writer connection comes back
//! clean for the next transaction every time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use billing_db::testing::TestDatabase;
use std::future::Future;

use billing_db::{Db, DbOptions};

async fn count(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM items")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn insert(tx: &mut billing_db::Tx, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO items (id) VALUES ($1)")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

async fn uncommitted_work_is_never_seen(test_db: TestDatabase) {
    let db = Db::connect(test_db.url(), &DbOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE items (id TEXT PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();

    // Committed.
    let mut tx = db.begin_write().await.unwrap();
    insert(&mut tx, "a").await.unwrap();
    tx.commit().await.unwrap();

    // Rolled back.
    let mut tx = db.begin_write().await.unwrap();
    insert(&mut tx, "b").await.unwrap();
    tx.rollback().await.unwrap();

    // Dropped after a failed statement (an early `?` return).
    let mut tx = db.begin_write().await.unwrap();
    insert(&mut tx, "c").await.unwrap();
    assert!(insert(&mut tx, "a").await.is_err(), "duplicate key");
    drop(tx);

    // Dropped while open, with no error: a cancelled request.
    let mut tx = db.begin_write().await.unwrap();
    insert(&mut tx, "d").await.unwrap();
    drop(tx);

    // Cancelled in the middle of a statement.
    let mut tx = db.begin_write().await.unwrap();
    let cancelled = tokio::time::timeout(std::time::Duration::ZERO, insert(&mut tx, "e")).await;
    drop(cancelled);
    drop(tx);

    // The next transaction starts clean and commits only its own work.
    let mut tx = db.begin_write().await.unwrap();
    insert(&mut tx, "f").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(&db).await, 2, "a and f only");

    // Many writers queue; none is lost.
    let mut writers = Vec::new();
    for i in 0..32 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut tx = db.begin_write().await.unwrap();
            insert(&mut tx, &format!("w{i}")).await.unwrap();
            if i % 2 == 0 {
                tx.commit().await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(count(&db).await, 18, "a, f and the 16 even writers");

    db.close().await;
    assert!(db.begin_write().await.is_err(), "closed");
    test_db.drop_database().await;
}

/// A batch's statements all land, with their own parameters, in one call.
async fn a_batch_writes_every_statement(test_db: TestDatabase) {
    use billing_db::batch::{Batch, Value};
    let db = Db::connect(test_db.url(), &DbOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE other (id TEXT PRIMARY KEY, label TEXT)")
        .execute(db.pool())
        .await
        .unwrap();
    let mut tx = db.begin_write().await.unwrap();
    sqlx::query("INSERT INTO items (id, n) VALUES ('a', 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut batch = Batch::new();
    batch.push(
        "INSERT INTO items (id, n) VALUES ($1, $2), ($3, $4)".into(),
        vec![
            Value::from("b"),
            Value::Int(2),
            Value::from("c"),
            Value::Int(3),
        ],
    );
    batch.push(
        "UPDATE items SET n = $1 WHERE id = $2".into(),
        vec![Value::Int(10), Value::from("a")],
    );
    batch.push(
        "INSERT INTO other (id, label) VALUES ($1, $2)".into(),
        vec![Value::from("x"), Value::OptText(None)],
    );
    batch.run(&mut tx, db.backend()).await.unwrap();
    tx.commit().await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, n FROM items ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![("a".into(), 10), ("b".into(), 2), ("c".into(), 3)]
    );
    let other: Vec<(String, Option<String>)> = sqlx::query_as("SELECT id, label FROM other")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(other, vec![("x".into(), None)]);
    // A failing statement fails the batch, and the transaction writes nothing.
    let mut tx = db.begin_write().await.unwrap();
    let mut batch = Batch::new();
    batch.push(
        "INSERT INTO items (id, n) VALUES ($1, $2)".into(),
        vec![Value::from("d"), Value::Int(4)],
    );
    batch.push(
        "INSERT INTO items (id, n) VALUES ($1, $2)".into(),
        vec![Value::from("a"), Value::Int(5)],
    );
    assert!(
        batch.run(&mut tx, db.backend()).await.is_err(),
        "duplicate key"
    );
    drop(tx);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 3);
    db.close().await;
    test_db.drop_database().await;
}

#[tokio::test]
async fn a_batch_writes_every_statement_on_sqlite() {
    a_batch_writes_every_statement(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn a_batch_writes_every_statement_on_postgres() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    a_batch_writes_every_statement(test_db).await;
}

#[tokio::test]
async fn uncommitted_work_is_never_seen_on_sqlite() {
    uncommitted_work_is_never_seen(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn uncommitted_work_is_never_seen_on_postgres() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    uncommitted_work_is_never_seen(test_db).await;
}

/// Found by the lifecycle simulation (seed 20261130, SQLite): a request
/// cancelled while its write transaction was still beginning left SQLite's
/// writer connection inside the transaction without knowing it, and every
/// later write failed with "cannot start a transaction within a
/// transaction" until the process restarted. Every cut point of `begin`
/// is tried: after each, the next transaction still commits.
async fn seed_20261130_a_write_cancelled_while_beginning_leaves_the_writer_usable(
    test_db: TestDatabase,
) {
    let db = Db::connect(test_db.url(), &DbOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE items (id TEXT PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    for polls in 1..8 {
        // `begin_write` polled `polls` times, then dropped: a cancel at
        // every await point it has.
        let mut begin = Box::pin(db.begin_write());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        for _ in 0..polls {
            if let std::task::Poll::Ready(tx) = begin.as_mut().poll(&mut cx) {
                drop(tx);
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        drop(begin);
        let mut tx = db.begin_write().await.unwrap();
        insert(&mut tx, &format!("after-{polls}")).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(count(&db).await, 7);
    db.close().await;
    test_db.drop_database().await;
}

#[tokio::test]
async fn seed_20261130_a_write_cancelled_while_beginning_leaves_the_writer_usable_on_sqlite() {
    seed_20261130_a_write_cancelled_while_beginning_leaves_the_writer_usable(TestDatabase::sqlite())
        .await;
}

#[tokio::test]
async fn seed_20261130_a_write_cancelled_while_beginning_leaves_the_writer_usable_on_postgres() {
    let Some(test_db) = TestDatabase::postgres().await else {
        return;
    };
    seed_20261130_a_write_cancelled_while_beginning_leaves_the_writer_usable(test_db).await;
}
