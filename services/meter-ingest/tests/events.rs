//! meter-ingest's event feed: each meter change writes its event with the
//! change (`meter.created`, `meter.updated`, `meter.deactivated`,
//! `meter.reactivated`, with the meter as data); a refused change writes
//! none. On both backends. (Resume semantics: `billing_db::events`, tested
//! in libs/db and the ledger.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::events::v1 as ev;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::meter::v1 as pb;
use common::*;

async fn meter_changes_write_their_events(t: &TestMeter) {
    let mut client = t.client();
    let meter = client
        .create_meter(authed(
            KEY_A,
            pb::CreateMeterRequest {
                event_name: "calls".into(),
                display_name: "Calls".into(),
                aggregation: pb::Aggregation::Sum.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .meter
        .unwrap();
    client
        .update_meter(authed(
            KEY_A,
            pb::UpdateMeterRequest {
                id: meter.id.clone(),
                display_name: "API calls".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        // The second deactivation is refused (METER_ALREADY_INACTIVE): no event.
        let _ = client
            .deactivate_meter(authed(
                KEY_A,
                pb::DeactivateMeterRequest {
                    id: meter.id.clone(),
                    ..Default::default()
                },
            ))
            .await;
    }
    client
        .reactivate_meter(authed(
            KEY_A,
            pb::ReactivateMeterRequest {
                id: meter.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    let mut feed = EventServiceClient::new(t.channel.clone());
    let mut stream = feed
        .watch_events(authed(KEY_A, ev::WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while events.len() < 4 {
        events.extend(stream.message().await.unwrap().unwrap().events);
    }
    let seen: Vec<(&str, String, bool)> = events
        .iter()
        .map(|e| match &e.data {
            Some(ev::event::Data::Meter(m)) => (
                e.r#type.as_str(),
                m.display_name.clone(),
                m.status() == pb::MeterStatus::Active,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("meter.created", "Calls".to_owned(), true),
            ("meter.updated", "API calls".to_owned(), true),
            ("meter.deactivated", "API calls".to_owned(), false),
            ("meter.reactivated", "API calls".to_owned(), true),
        ]
    );
    let listed = feed
        .list_events(authed(KEY_A, ev::ListEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.events.len(), 4, "the refused change wrote nothing");
    let other = feed
        .list_events(authed(KEY_B, ev::ListEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(other.events.is_empty());
}

backends!(meter_changes_write_their_events);
