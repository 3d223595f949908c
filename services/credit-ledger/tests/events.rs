//! The ledger's event feed (DESIGN.md §9): events are written with the
//! change, and a consumer that keeps disconnecting and resuming from its
//! last cursor while many writers commit concurrently sees every event
//! exactly once, in one order. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use billing_proto::events::v1 as ev;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::ledger::v1 as pb;
use billing_testkit::fixtures::{grant_request, usd};
use common::*;
use tonic::Code;

const WRITERS: usize = 8;
const GRANTS_EACH: usize = 30;

fn created_grant(event: &ev::Event) -> Option<String> {
    match &event.data {
        Some(ev::event::Data::CreditGrant(grant)) if event.r#type == "credit_balance.created" => {
            Some(grant.id.clone())
        }
        _ => None,
    }
}

async fn resuming_consumers_see_every_event_once(t: &TestLedger) {
    // Writers: each creates grants back to back, and applies one of them.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut client = t.client();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..GRANTS_EACH {
                    let grant = client
                        .create_credit_grant(authed(
                            KEY_A,
                            grant_request(&format!("cus_w{w}"), &format!("g{n}"), 1_000),
                        ))
                        .await
                        .unwrap()
                        .into_inner()
                        .credit_grant
                        .unwrap();
                    ids.push(grant.id);
                }
                ids
            })
        })
        .collect();

    // The consumer: reads a few batches, disconnects, resumes from its cursor.
    let expected = WRITERS * GRANTS_EACH;
    let mut feed = EventServiceClient::new(t.channel.clone());
    let mut seen: Vec<ev::Event> = Vec::new();
    let mut cursor = String::new();
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.iter().filter_map(created_grant).count() < expected {
        assert!(
            Instant::now() < deadline,
            "the feed stalled after {} events",
            seen.len()
        );
        let mut stream = feed
            .watch_events(authed(
                KEY_A,
                ev::WatchEventsRequest {
                    after_cursor: cursor.clone(),
                    types: vec![],
                    until_caught_up: false,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        reconnects += 1;
        // Take 1 to 7 events, then hang up (the rest of a batch is dropped,
        // as by a consumer that crashed): the next connection resumes
        // after the last event taken.
        let mut take = 1 + reconnects % 7;
        while take > 0 {
            let next = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            let Ok(Ok(Some(batch))) = next else { break };
            for event in batch.events.into_iter().take(take) {
                cursor = event.cursor.clone();
                seen.push(event);
                take -= 1;
            }
        }
    }
    let mut granted = BTreeSet::new();
    for writer in writers {
        granted.extend(writer.await.unwrap());
    }

    // Every event once, every grant's creation seen, cursors increasing.
    let ids: BTreeSet<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), seen.len(), "an event was delivered twice");
    let created: BTreeSet<String> = seen.iter().filter_map(created_grant).collect();
    assert_eq!(created, granted, "every grant's creation, once");
    let positions: Vec<(i64, i64)> = seen
        .iter()
        .map(|e| {
            let (p, s) = e.cursor.split_once('_').unwrap();
            (p.parse().unwrap(), s.parse().unwrap())
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "one order");
    assert!(reconnects > 10, "the consumer resumed {reconnects} times");

    // A second consumer from the start sees the same events in the same order.
    let mut again = Vec::new();
    let mut stream = feed
        .watch_events(authed(KEY_A, ev::WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    while again.len() < seen.len() {
        let batch = stream.message().await.unwrap().unwrap();
        again.extend(batch.events.into_iter().map(|e| e.id));
    }
    let first: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(again[..first.len()], first[..]);
}

async fn changes_write_their_events_and_lists_page(t: &TestLedger) {
    let mut client = t.client();
    let grant = client
        .create_credit_grant(authed(KEY_A, grant_request("cus_feed", "paid", 1_000)))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    // The application a day later: ListEvents can tell them apart by time.
    t.clock.set(t0() + chrono::TimeDelta::days(1));
    client
        .apply_credits(authed(
            KEY_A,
            pb::ApplyCreditsRequest {
                pool: Vec::new(),
                customer: "cus_feed".into(),
                invoice: "in_feed".into(),
                period_end: billing_testkit::fixtures::ts(t0() + chrono::TimeDelta::days(1)),
                lines: vec![pb::InvoiceLine {
                    invoice_line_item: "line".into(),
                    price: "price_feed".into(),
                    amount: usd(300),
                }],
                preview: false,
            },
        ))
        .await
        .unwrap();
    client
        .void_credit_grant(authed(
            KEY_A,
            pb::VoidCreditGrantRequest {
                id: grant.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err(); // applied grants cannot be voided: no event for a refusal

    let mut feed = EventServiceClient::new(t.channel.clone());
    let list = |types: Vec<String>, page_token: String| ev::ListEventsRequest {
        created_after: None,
        created_before: None,
        types,
        page_size: 1,
        page_token,
    };
    let first = feed
        .list_events(authed(KEY_A, list(vec![], String::new())))
        .await
        .unwrap()
        .into_inner();
    let second = feed
        .list_events(authed(KEY_A, list(vec![], first.next_page_token.clone())))
        .await
        .unwrap()
        .into_inner();
    let types: Vec<&str> = first
        .events
        .iter()
        .chain(&second.events)
        .map(|e| e.r#type.as_str())
        .collect();
    assert_eq!(types, ["credit_balance.updated", "credit_balance.created"]);
    let Some(ev::event::Data::CreditGrant(after)) = &first.events[0].data else {
        panic!("{:?}", first.events[0]);
    };
    assert_eq!(billing_testkit::fixtures::value_of(&after.available), 700);
    let only_created = feed
        .list_events(authed(
            KEY_A,
            list(vec!["credit_balance.created".into()], String::new()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_created.events.len(), 1);
    // A created range: [after, before).
    let noon = billing_testkit::fixtures::ts(t0() + chrono::TimeDelta::hours(12));
    let in_range = |created_after, created_before| ev::ListEventsRequest {
        created_after,
        created_before,
        page_size: 10,
        ..Default::default()
    };
    let types_of = |response: ev::ListEventsResponse| -> Vec<String> {
        response.events.into_iter().map(|e| e.r#type).collect()
    };
    let later = feed
        .list_events(authed(KEY_A, in_range(noon, None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(types_of(later), ["credit_balance.updated"]);
    let earlier = feed
        .list_events(authed(KEY_A, in_range(None, noon)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(types_of(earlier), ["credit_balance.created"]);
    let empty = feed
        .list_events(authed(KEY_A, in_range(noon, noon)))
        .await
        .unwrap_err();
    assert_eq!(
        billing_testkit::bad_request_fields(&empty),
        ["created_before"]
    );

    // Another account's feed is its own; bad cursors and types are named.
    let other = feed
        .list_events(authed(KEY_B, list(vec![], String::new())))
        .await
        .unwrap()
        .into_inner();
    assert!(other.events.is_empty());
    let bad = feed
        .watch_events(authed(
            KEY_A,
            ev::WatchEventsRequest {
                after_cursor: "yesterday".into(),
                types: vec!["Credit Balance".into()],
                until_caught_up: false,
            },
        ))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut fields = BTreeMap::new();
    for field in billing_testkit::bad_request_fields(&bad) {
        fields.insert(field, ());
    }
    assert!(fields.contains_key("types[0]"), "{fields:?}");
}

backends!(
    resuming_consumers_see_every_event_once,
    changes_write_their_events_and_lists_page,
);
