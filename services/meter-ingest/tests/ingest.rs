//! Dedupe under concurrency, streaming, bad input, meter lifecycle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::meter::v1 as pb;
use billing_testkit::bad_request_fields as fields;
use chrono::TimeDelta;
use common::*;

/// 8 clients send overlapping batches of the same 1,000 identifiers at once;
/// every identifier is counted exactly once.
async fn concurrent_overlapping_batches_count_once(t: &TestMeter) {
    let sum = t.meter("dedupe_sum", pb::Aggregation::Sum).await.id;
    let count = t.meter("dedupe_count", pb::Aggregation::Count).await.id;
    let at = t0() - TimeDelta::hours(3);
    let mut clients = Vec::new();
    for client in 0..8_usize {
        let mut grpc = t.client();
        clients.push(tokio::spawn(async move {
            let mut accepted = 0;
            for round in 0..5_usize {
                // Each batch covers a window of 300 identifiers, shifted per client and round.
                let first = (client * 97 + round * 131) % 700;
                let mut events = Vec::new();
                for i in first..first + 300 {
                    let offset = TimeDelta::seconds(i64::try_from(i).unwrap());
                    events.push(event(
                        "dedupe_sum",
                        &format!("s-{i}"),
                        at + offset,
                        "cus_1",
                        "1.25",
                    ));
                    events.push(event(
                        "dedupe_count",
                        &format!("c-{i}"),
                        at + offset,
                        "cus_1",
                        "0",
                    ));
                }
                let response = grpc
                    .ingest_events(authed(KEY_A, pb::IngestEventsRequest { events }))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(response.rejected, 0);
                accepted += response.accepted;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for client in clients {
        accepted += client.await.unwrap();
    }
    // The identifiers sent are the union of all windows.
    let mut sent = std::collections::BTreeSet::new();
    for client in 0..8_usize {
        for round in 0..5_usize {
            let first = (client * 97 + round * 131) % 700;
            sent.extend(first..first + 300);
        }
    }
    let distinct = i32::try_from(sent.len()).unwrap();
    assert_eq!(
        accepted,
        2 * distinct,
        "each identifier accepted once across all clients"
    );
    let (start, end) = (t0() - TimeDelta::days(1), t0());
    assert_eq!(
        t.total(&count, "cus_1", start, end).await,
        distinct.to_string()
    );
    let expected_sum = billing_money::Decimal::new(125, 2) * billing_money::Decimal::from(distinct);
    assert_eq!(
        t.total(&sum, "cus_1", start, end).await,
        expected_sum.normalize().to_string()
    );
}

async fn duplicates_within_and_across_batches(t: &TestMeter) {
    let count = t.meter("dups", pb::Aggregation::Count).await.id;
    let at = t0() - TimeDelta::minutes(30);
    let first = t
        .ingest(vec![
            event("dups", "a", at, "cus_1", "1"),
            event("dups", "a", at, "cus_1", "1"),
            event("dups", "b", at, "cus_1", "1"),
        ])
        .await;
    assert_eq!((first.accepted, first.duplicate), (2, 1));
    let second = t
        .ingest(vec![
            event("dups", "b", at, "cus_1", "1"),
            event("dups", "c", at, "cus_1", "1"),
        ])
        .await;
    assert_eq!((second.accepted, second.duplicate), (1, 1));
    assert_eq!(t.total(&count, "cus_1", at, t0()).await, "3");
}

async fn streamed_batches_are_acknowledged(t: &TestMeter) {
    let count = t.meter("streamed", pb::Aggregation::Count).await.id;
    let at = t0() - TimeDelta::minutes(10);
    let batches: Vec<pb::StreamEventsRequest> = (0..4)
        .map(|b| pb::StreamEventsRequest {
            events: (0..250)
                .map(|i| {
                    event(
                        "streamed",
                        &format!("st-{}", (b * 250 + i) % 900),
                        at,
                        "cus_1",
                        "1",
                    )
                })
                .chain(std::iter::once(event("streamed", "", at, "cus_1", "1")))
                .collect(),
        })
        .collect();
    let mut acks = t
        .client()
        .stream_events(authed(KEY_A, tokio_stream::iter(batches)))
        .await
        .unwrap()
        .into_inner();
    let mut totals = (0, 0, 0);
    let mut index = 0;
    while let Some(ack) = acks.message().await.unwrap() {
        assert_eq!(ack.batch_index, index);
        assert_eq!(ack.rejections.len(), 1);
        assert_eq!(ack.rejections[0].field, "identifier");
        totals = (
            totals.0 + ack.accepted,
            totals.1 + ack.duplicate,
            totals.2 + ack.rejected,
        );
        index += 1;
    }
    assert_eq!(index, 4);
    assert_eq!(totals, (900, 100, 4));
    assert_eq!(t.total(&count, "cus_1", at, t0()).await, "900");
}

async fn bad_events_never_reject_their_siblings(t: &TestMeter) {
    let sum = t.meter("bad_sum", pb::Aggregation::Sum).await.id;
    let at = t0() - TimeDelta::minutes(5);
    let mut no_customer = event("bad_sum", "no-customer", at, "cus_1", "1");
    no_customer.payload.remove("customer");
    let mut no_time = event("bad_sum", "no-time", at, "cus_1", "1");
    no_time.timestamp = None;
    let response = t
        .ingest(vec![
            event("bad_sum", "good-1", at, "cus_1", "1.5"),
            event("unknown_meter", "unknown", at, "cus_1", "1"),
            no_customer,
            event("bad_sum", "not-a-number", at, "cus_1", "abc"),
            event("bad_sum", "exponent", at, "cus_1", "1e3"),
            event("bad_sum", &"x".repeat(101), at, "cus_1", "1"),
            no_time,
            event("bad_sum", "too-precise", at, "cus_1", "0.0000000000001"),
            event("bad_sum", "good-2", at, "cus_1", "2"),
        ])
        .await;
    let fields: Vec<&str> = response.results.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "",
            "event_name",
            "payload.customer",
            "payload.value",
            "payload.value",
            "identifier",
            "timestamp",
            "payload.value",
            ""
        ]
    );
    assert_eq!((response.accepted, response.rejected), (2, 7));
    assert!(
        response
            .results
            .iter()
            .filter(|r| !r.field.is_empty())
            .all(|r| !r.reason.is_empty())
    );
    assert_eq!(t.total(&sum, "cus_1", at, t0()).await, "3.5");
}

/// A range past the years 2000–2099 names the field; a range inside them
/// with more than 2,000 windows is refused from the arithmetic (an hourly
/// range of a century, about 876,000 windows, is never built).
async fn usage_ranges_are_bounded(t: &TestMeter) {
    let meter = t.meter("bounded", pb::Aggregation::Sum).await.id;
    let seconds = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let request = |start: i64, end: i64| pb::GetUsageRequest {
        customer: "cus_1".into(),
        meter: meter.clone(),
        start_time: seconds(start),
        end_time: seconds(end),
        grouping_window: pb::GroupingWindow::Hour.into(),
    };
    let year_9999 = 253_402_214_400;
    let cases = [
        (request(t0().timestamp(), year_9999), "end_time"),
        (request(0, t0().timestamp()), "start_time"),
        (request(946_684_800, 4_102_444_799), "grouping_window"),
    ];
    for (request, field) in cases {
        let status = t
            .client()
            .get_usage(authed(KEY_A, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(fields(&status), vec![field]);
    }
}

/// A control character rejects that event alone, identically on both
/// backends (PostgreSQL cannot store NUL); its siblings are accepted.
async fn control_characters_reject_only_their_event(t: &TestMeter) {
    let sum = t.meter("nul_sum", pb::Aggregation::Sum).await.id;
    let at = t0() - TimeDelta::minutes(5);
    let mut bad_key = event("nul_sum", "bad-key", at, "cus_1", "1");
    bad_key.payload.insert("re\0gion".into(), "eu".into());
    let response = t
        .ingest(vec![
            event("nul_sum", "nul\0id", at, "cus_1", "1"),
            event("nul_sum", "bad-customer", at, "cus_\0", "1"),
            event("nul_sum", "bad-value", at, "cus_1", "1\u{7}"),
            bad_key,
            event("nul_sum", "good", at, "cus_1", "4"),
        ])
        .await;
    let rejected: Vec<&str> = response.results.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(
        rejected,
        vec!["identifier", "payload", "payload", "payload", ""]
    );
    assert_eq!((response.accepted, response.rejected), (1, 4));
    assert_eq!(t.total(&sum, "cus_1", at, t0()).await, "4");
    // Outside an event batch, a NUL anywhere refuses the request.
    let status = t
        .client()
        .get_meter(authed(
            KEY_A,
            pb::GetMeterRequest {
                id: "mtr_\0".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["id"]);
}

/// A batch the server cannot read (not protobuf, or over the size limit)
/// in the middle of a stream ends it with that error, never OK: the client
/// learns exactly which batches were stored (the acknowledged ones).
async fn a_bad_batch_ends_the_stream_with_its_error(t: &TestMeter) {
    use prost::Message;
    const STREAM: &str = "/billing.meter.v1.MeterService/StreamEvents";
    let sum = t.meter("streamed_sum", pb::Aggregation::Sum).await.id;
    let at = t0() - TimeDelta::minutes(5);
    let batch = |id: &str| {
        pb::StreamEventsRequest {
            events: vec![event("streamed_sum", id, at, "cus_1", "1")],
        }
        .encode_to_vec()
    };
    let oversized = {
        let mut body = vec![0x0a];
        let huge = vec![b'x'; 4 * 1024 * 1024 + 1];
        prost::encoding::encode_varint(huge.len() as u64, &mut body);
        body.extend_from_slice(&huge);
        body
    };
    for (bad, code) in [
        (vec![0x0a, 0x10, 0x61], tonic::Code::InvalidArgument),
        (oversized, tonic::Code::ResourceExhausted),
    ] {
        let tag = code as i32;
        let bodies = vec![
            batch(&format!("{tag}-0")),
            batch(&format!("{tag}-1")),
            bad,
            batch(&format!("{tag}-3")),
        ];
        let (acks, ended) =
            billing_testkit::raw::stream(t.channel.clone(), STREAM, KEY_A, bodies).await;
        let acks: Vec<pb::StreamEventsResponse> = acks
            .iter()
            .map(|a| pb::StreamEventsResponse::decode(a.as_slice()).unwrap())
            .collect();
        assert_eq!(
            acks.iter().map(|a| a.batch_index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        let status = ended.expect("the stream ends with an error, not OK");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains("batch 2"), "{}", status.message());
    }
    // Exactly the acknowledged batches were stored: two per run.
    assert_eq!(t.total(&sum, "cus_1", at, t0()).await, "4");
}

/// A value rust_decimal would round (more than 28 digits) is rejected, not
/// counted rounded: "1.0000000000000000000000000000001" was counted as 1.
async fn values_are_never_rounded(t: &TestMeter) {
    let sum = t.meter("exact_sum", pb::Aggregation::Sum).await.id;
    let at = t0() - TimeDelta::minutes(5);
    let response = t
        .ingest(vec![
            event(
                "exact_sum",
                "rounded-up",
                at,
                "cus_1",
                "1.0000000000000000000000000000001",
            ),
            event(
                "exact_sum",
                "rounded-away",
                at,
                "cus_1",
                &format!("0.{}1", "0".repeat(30)),
            ),
            event("exact_sum", "exact", at, "cus_1", "2.000000000001"),
        ])
        .await;
    let fields: Vec<&str> = response.results.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(fields, vec!["payload.value", "payload.value", ""]);
    assert_eq!(t.total(&sum, "cus_1", at, t0()).await, "2.000000000001");
}

async fn oversized_and_empty_batches_are_refused(t: &TestMeter) {
    t.meter("big", pb::Aggregation::Count).await;
    let at = t0() - TimeDelta::minutes(5);
    let events: Vec<_> = (0..1_001)
        .map(|i| event("big", &format!("b{i}"), at, "cus_1", "1"))
        .collect();
    let status = t
        .client()
        .ingest_events(authed(KEY_A, pb::IngestEventsRequest { events }))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["events"]);
    let status = t
        .client()
        .ingest_events(authed(KEY_A, pb::IngestEventsRequest { events: vec![] }))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["events"]);
}

async fn meters_validate_and_keep_event_names_unique(t: &TestMeter) {
    let status = t
        .client()
        .create_meter(authed(KEY_A, pb::CreateMeterRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&status),
        vec!["event_name", "display_name", "aggregation"]
    );
    let status = t
        .client()
        .create_meter(authed(
            KEY_A,
            pb::CreateMeterRequest {
                event_name: "x".repeat(101),
                display_name: "ok".into(),
                aggregation: pb::Aggregation::Sum.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["event_name"]);

    let first = t.meter("unique_name", pb::Aggregation::Sum).await;
    let taken = t
        .client()
        .create_meter(authed(
            KEY_A,
            pb::CreateMeterRequest {
                event_name: "unique_name".into(),
                display_name: "again".into(),
                aggregation: pb::Aggregation::Count.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), tonic::Code::AlreadyExists);

    let deactivate = pb::DeactivateMeterRequest {
        id: first.id.clone(),
        ..Default::default()
    };
    let inactive = t
        .client()
        .deactivate_meter(authed(KEY_A, deactivate))
        .await
        .unwrap()
        .into_inner()
        .meter
        .unwrap();
    assert_eq!(inactive.status, pb::MeterStatus::Inactive as i32);
    let at = t0() - TimeDelta::minutes(1);
    let refused = t
        .ingest(vec![event(
            "unique_name",
            "while-inactive",
            at,
            "cus_1",
            "1",
        )])
        .await;
    assert_eq!(
        (refused.rejected, refused.results[0].field.as_str()),
        (1, "event_name")
    );

    let second = t.meter("unique_name", pb::Aggregation::Count).await;
    let reactivate = pb::ReactivateMeterRequest {
        id: first.id.clone(),
        ..Default::default()
    };
    let status = t
        .client()
        .reactivate_meter(authed(KEY_A, reactivate))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::AlreadyExists,
        "the name belongs to {}",
        second.id
    );

    let renamed = t
        .client()
        .update_meter(authed(
            KEY_A,
            pb::UpdateMeterRequest {
                id: second.id.clone(),
                display_name: "API calls".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .meter
        .unwrap();
    assert_eq!(renamed.display_name, "API calls");
    // Another account sees none of it.
    let other = t
        .client()
        .get_meter(authed(
            KEY_B,
            pb::GetMeterRequest {
                id: second.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::NotFound);
}

async fn usage_requests_are_checked(t: &TestMeter) {
    let meter = t.meter("checked", pb::Aggregation::Sum).await.id;
    let request =
        |meter: &str, start: i64, end: i64, grouping: pb::GroupingWindow| pb::GetUsageRequest {
            customer: "cus_1".into(),
            meter: meter.into(),
            start_time: Some(billing_server::time::to_proto(
                t0() + TimeDelta::hours(start),
            )),
            end_time: Some(billing_server::time::to_proto(t0() + TimeDelta::hours(end))),
            grouping_window: grouping.into(),
        };
    let status = t
        .client()
        .get_usage(authed(
            KEY_A,
            request(&meter, 2, 1, pb::GroupingWindow::Unspecified),
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["end_time"]);
    let status = t
        .client()
        .get_usage(authed(
            KEY_A,
            request(&meter, 0, 24 * 100, pb::GroupingWindow::Hour),
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), vec!["grouping_window"]);
    let status = t
        .client()
        .get_usage(authed(KEY_A, pb::GetUsageRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&status),
        vec!["customer", "meter", "start_time", "end_time"]
    );
    let status = t
        .client()
        .get_usage(authed(
            KEY_A,
            request("mtr_unknown", 0, 1, pb::GroupingWindow::Unspecified),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

backends!(
    concurrent_overlapping_batches_count_once,
    duplicates_within_and_across_batches,
    streamed_batches_are_acknowledged,
    bad_events_never_reject_their_siblings,
    oversized_and_empty_batches_are_refused,
    meters_validate_and_keep_event_names_unique,
    usage_requests_are_checked,
    values_are_never_rounded,
    usage_ranges_are_bounded,
    control_characters_reject_only_their_event,
    a_bad_batch_ends_the_stream_with_its_error,
);
