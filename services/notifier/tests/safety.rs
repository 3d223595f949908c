//! Addresses of the notifier's own network are refused unless allowed;
//! an endpoint failing for three days is disabled with an event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::events::v1 as ev;
use billing_proto::webhooks::v1 as pb;
use billing_server::clock::Clock;
use billing_testkit::{Backend, Harness};
use chrono::TimeDelta;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_allowed() {
    let Some(t) = TestNotifier::start_with(Backend::Sqlite, |config| {
        config.allow_private_urls = false;
    })
    .await
    else {
        return;
    };
    let mut client = t.webhooks.clone();
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.8/hook",
        "http://[::1]/hook",
    ] {
        let refused = client
            .create_webhook_endpoint(authed(
                KEY_A,
                pb::CreateWebhookEndpointRequest {
                    url: url.into(),
                    enabled_events: vec!["*".into()],
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{url}");
        assert_eq!(
            billing_testkit::bad_request_fields(&refused),
            ["url"],
            "{url}"
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_unless_allowed() {
    let Some(t) = TestNotifier::start_with(Backend::Sqlite, |config| {
        config.allow_insecure_urls = false;
    })
    .await
    else {
        return;
    };
    let refused = t
        .webhooks
        .clone()
        .create_webhook_endpoint(authed(
            KEY_A,
            pb::CreateWebhookEndpointRequest {
                url: "http://example.com/hook".into(),
                enabled_events: vec!["*".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(billing_testkit::bad_request_fields(&refused), ["url"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_three_days_is_disabled_with_an_event() {
    let Some(t) =
        TestNotifier::start_on(Backend::Sqlite, Clock::manual(chrono::Utc::now()), |_| {}).await
    else {
        return;
    };
    let (receiver, url, _server) = Receiver::start().await;
    receiver.script.lock().unwrap().extend([500; 20]);
    let (endpoint, _) = t.endpoint(&url, &["credit_balance.created"]).await;
    t.grant("cus_failing", 1).await;
    receiver.wait_for(1).await;
    // The attempt's outcome is recorded just after the receiver answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let failing = loop {
        let found = t.get_endpoint(&endpoint.id).await;
        if found.failing_since.is_some() {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "never marked failing");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(failing.status, pb::WebhookEndpointStatus::Enabled as i32);

    // Three days later the next failure disables it.
    t.clock.advance(TimeDelta::days(3));
    t.grant("cus_failing", 2).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while t.get_endpoint(&endpoint.id).await.status != pb::WebhookEndpointStatus::Disabled as i32 {
        assert!(std::time::Instant::now() < deadline, "never disabled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let disabled = t.get_endpoint(&endpoint.id).await;
    assert_eq!(disabled.disabled_reason, "every delivery failed for 3 days");
    // The notifier's own feed says so.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", t.notifier_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let events = ev::event_service_client::EventServiceClient::new(channel)
        .list_events(authed(KEY_A, ev::ListEventsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].r#type, "webhook_endpoint.disabled");
    match &events[0].data {
        Some(ev::event::Data::WebhookEndpoint(e)) => assert_eq!(e.id, endpoint.id),
        other => panic!("{other:?}"),
    }
    t.stop().await;
}
