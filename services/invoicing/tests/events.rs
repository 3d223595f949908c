//! Invoicing's events: ListInvoiceEvents (newest first, per invoice and
//! type, paged, only the caller's account) and the EventService feed with
//! each object after its change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::invoicing::v1 as pb;
use chrono::{Months, TimeDelta};
use common::*;

backends!(
    events_follow_the_invoice_lifecycle_newest_first,
    the_feed_carries_each_object_after_its_change
);

async fn list(
    t: &Suite,
    key: &str,
    request: pb::ListInvoiceEventsRequest,
) -> Result<pb::ListInvoiceEventsResponse, tonic::Status> {
    t.invoicing
        .clone()
        .list_invoice_events(authed(key, request))
        .await
        .map(tonic::Response::into_inner)
}

fn of_invoice(invoice: &str) -> pb::ListInvoiceEventsRequest {
    pb::ListInvoiceEventsRequest {
        invoice: invoice.into(),
        ..Default::default()
    }
}

fn types(response: &pb::ListInvoiceEventsResponse) -> Vec<&str> {
    response.events.iter().map(|e| e.r#type.as_str()).collect()
}

async fn events_follow_the_invoice_lifecycle_newest_first(t: &Suite) {
    let meter = t.meter("calls").await;
    let price = t.per_unit_price(&meter, "2.5").await;
    let (first, second) = (t.customer("Acme").await, t.customer("Globex").await);
    let subs = [
        t.subscribe(&first, &[&price]).await.id,
        t.subscribe(&second, &[&price]).await.id,
    ];
    t.usage(
        "calls",
        &first,
        t0() + TimeDelta::days(1),
        &[("c-1", "100")],
    )
    .await;
    t.advance_to(t0().checked_add_months(Months::new(1)).unwrap())
        .await;
    let draft = t.create_invoice(&subs[0]).await;
    let other = t.create_invoice(&subs[1]).await;
    t.finalize(&draft.id).await.unwrap();
    t.void(&draft.id).await.unwrap();

    let all = list(t, KEY_A, of_invoice(&draft.id)).await.unwrap();
    assert_eq!(
        types(&all),
        ["invoice.voided", "invoice.finalized", "invoice.created"]
    );
    assert!(all.events.iter().all(|e| e.invoice == draft.id));
    assert!(all.events.iter().all(|e| e.id.starts_with("evt_")));
    assert!(all.next_page_token.is_empty());

    // Pages of two follow the same order.
    let mut request = of_invoice(&draft.id);
    request.page_size = 2;
    let page_one = list(t, KEY_A, request.clone()).await.unwrap();
    assert_eq!(types(&page_one), ["invoice.voided", "invoice.finalized"]);
    request.page_token = page_one.next_page_token;
    let page_two = list(t, KEY_A, request).await.unwrap();
    assert_eq!(types(&page_two), ["invoice.created"]);
    assert!(page_two.next_page_token.is_empty());

    // Without an invoice: both invoices' events; by type: only those.
    let account = list(t, KEY_A, pb::ListInvoiceEventsRequest::default())
        .await
        .unwrap();
    assert_eq!(account.events.len(), 4);
    let created = list(
        t,
        KEY_A,
        pb::ListInvoiceEventsRequest {
            r#type: "invoice.created".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut invoices: Vec<&str> = created.events.iter().map(|e| e.invoice.as_str()).collect();
    invoices.sort_unstable();
    let mut expected = [draft.id.as_str(), other.id.as_str()];
    expected.sort_unstable();
    assert_eq!(invoices, expected);

    // Another account sees none of them.
    let foreign = list(t, KEY_B, of_invoice(&draft.id)).await.unwrap();
    assert!(foreign.events.is_empty());

    // An unknown type names the field.
    let error = list(
        t,
        KEY_A,
        pb::ListInvoiceEventsRequest {
            r#type: "invoice.deleted".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(billing_testkit::bad_request_fields(&error), ["type"]);
}

async fn the_feed_carries_each_object_after_its_change(t: &Suite) {
    use billing_proto::events::v1::{WatchEventsRequest, event::Data};
    let meter = t.meter("calls").await;
    let price = t.per_unit_price(&meter, "2").await;
    let customer = t.customer("Acme").await;
    let sub = t.subscribe(&customer, &[&price]).await.id;
    t.usage(
        "calls",
        &customer,
        t0() + TimeDelta::days(1),
        &[("c-1", "10")],
    )
    .await;
    t.advance_to(t0().checked_add_months(Months::new(1)).unwrap())
        .await;
    let draft = t.create_invoice(&sub).await;
    t.finalize(&draft.id).await.unwrap();

    let mut feed = billing_proto::events::v1::event_service_client::EventServiceClient::new(
        t.channels[0].1.clone(),
    );
    let request = WatchEventsRequest::default();
    let mut watch = feed
        .watch_events(authed(KEY_A, request))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.extend(watch.message().await.unwrap().unwrap().events);
    }
    let types: Vec<&str> = seen.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "customer.created",
            "subscription.created",
            "invoice.created",
            "subscription.updated",
            "invoice.finalized",
        ]
    );
    match &seen[0].data {
        Some(Data::Customer(c)) => assert_eq!(c.id, customer),
        other => panic!("customer.created carries {other:?}"),
    }
    match &seen[3].data {
        // The period closed: the subscription is in its second period.
        Some(Data::Subscription(s)) => {
            assert_eq!(s.id, sub);
            assert_eq!(s.latest_invoice, draft.id);
        }
        other => panic!("subscription.updated carries {other:?}"),
    }
    match &seen[4].data {
        Some(Data::Invoice(invoice)) => {
            assert_eq!(invoice.id, draft.id);
            assert_eq!(invoice.status, pb::InvoiceStatus::Open as i32);
            assert_eq!(invoice.lines.len(), 1);
        }
        other => panic!("invoice.finalized carries {other:?}"),
    }
    // Another account's feed is empty.
    let foreign = feed
        .list_events(authed(KEY_B, Default::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(foreign.events.is_empty());
}
