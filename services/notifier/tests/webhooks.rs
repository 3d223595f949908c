//! Webhooks end to end: a grant in the real ledger becomes a signed
//! delivery to a real HTTP receiver; retries, 410, rotation, test events,
//! refused addresses and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::webhooks::v1 as pb;
use common::*;

backends!(
    a_grant_arrives_signed_and_a_tampered_body_fails,
    failed_attempts_are_retried_and_recorded,
    gone_disables_the_endpoint,
    a_rotated_secret_signs_beside_the_new_one,
    a_test_webhook_reaches_one_endpoint,
    endpoints_refuse_bad_input_and_other_accounts,
);

async fn a_grant_arrives_signed_and_a_tampered_body_fails(t: &TestNotifier) {
    let (receiver, url, _server) = Receiver::start().await;
    let (endpoint, secret) = t.endpoint(&url, &["credit_balance.created"]).await;
    assert!(secret.starts_with("whsec_"));
    let grant = t.grant("cus_signed", 500).await;

    let hits = receiver.wait_for(1).await;
    let hit = &hits[0];
    assert!(hit.id.starts_with("evt_"));
    assert!(verifies(&secret, hit, &hit.body), "{hit:?}");
    assert!(!verifies(&secret, hit, &hit.body.replace("500", "900")));
    let body: serde_json::Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(body["id"], hit.id.as_str());
    assert_eq!(body["type"], "credit_balance.created");
    assert_eq!(body["credit_grant"]["id"], grant.as_str());
    assert_eq!(body["credit_grant"]["customer"], "cus_signed");

    let deliveries = t
        .wait_deliveries(&endpoint.id, |d| {
            d.len() == 1 && d[0].status == pb::WebhookDeliveryStatus::Delivered as i32
        })
        .await;
    assert_eq!(deliveries[0].event, hit.id);
    assert_eq!(deliveries[0].attempts, 1);
    assert_eq!(deliveries[0].last_http_status, 200);
    // Events it does not list never reach it; account B's neither.
    t.ledger
        .clone()
        .create_credit_grant(authed(KEY_B, grant_request("cus_other", "g", 1)))
        .await
        .unwrap();
    t.grant("cus_second", 1).await;
    receiver.wait_for(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 2);
}

async fn failed_attempts_are_retried_and_recorded(t: &TestNotifier) {
    let (receiver, url, _server) = Receiver::start().await;
    receiver.script.lock().unwrap().extend([500, 500]);
    let (endpoint, _) = t.endpoint(&url, &["*"]).await;
    t.grant("cus_retry", 100).await;
    let deliveries = t
        .wait_deliveries(&endpoint.id, |d| {
            d.iter()
                .any(|d| d.status == pb::WebhookDeliveryStatus::Delivered as i32)
        })
        .await;
    let delivered = deliveries
        .iter()
        .find(|d| d.event_type == "credit_balance.created")
        .unwrap();
    assert_eq!(delivered.attempts, 3, "{delivered:?}");
    assert_eq!(delivered.last_http_status, 200);
    assert!(delivered.next_attempt.is_none());
    let hits = receiver.hits();
    assert_eq!(hits.iter().filter(|h| h.id == delivered.event).count(), 3);
    // The endpoint recovered: no failure record left.
    assert!(t.get_endpoint(&endpoint.id).await.failing_since.is_none());
}

async fn gone_disables_the_endpoint(t: &TestNotifier) {
    let (receiver, url, _server) = Receiver::start().await;
    receiver.script.lock().unwrap().push_back(410);
    let (endpoint, _) = t.endpoint(&url, &["credit_balance.created"]).await;
    t.grant("cus_gone", 100).await;
    let deliveries = t
        .wait_deliveries(&endpoint.id, |d| {
            d.len() == 1 && d[0].status == pb::WebhookDeliveryStatus::Failed as i32
        })
        .await;
    assert_eq!(deliveries[0].last_http_status, 410);
    let disabled = t.get_endpoint(&endpoint.id).await;
    assert_eq!(disabled.status, pb::WebhookEndpointStatus::Disabled as i32);
    assert!(disabled.disabled_reason.contains("410"));
    // Nothing more is sent to it; a retry is refused until it is enabled.
    t.grant("cus_gone", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 1);
    let refused = t
        .webhooks
        .clone()
        .retry_webhook_delivery(authed(
            KEY_A,
            pb::RetryWebhookDeliveryRequest {
                id: deliveries[0].id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    t.webhooks
        .clone()
        .update_webhook_endpoint(authed(
            KEY_A,
            pb::UpdateWebhookEndpointRequest {
                id: endpoint.id.clone(),
                disabled: Some(false),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    t.webhooks
        .clone()
        .retry_webhook_delivery(authed(
            KEY_A,
            pb::RetryWebhookDeliveryRequest {
                id: deliveries[0].id.clone(),
            },
        ))
        .await
        .unwrap();
    t.wait_deliveries(&endpoint.id, |d| {
        d.iter()
            .any(|d| d.status == pb::WebhookDeliveryStatus::Delivered as i32)
    })
    .await;
}

async fn a_rotated_secret_signs_beside_the_new_one(t: &TestNotifier) {
    let (receiver, url, _server) = Receiver::start().await;
    let (endpoint, old) = t.endpoint(&url, &["credit_balance.created"]).await;
    let rotated = t
        .webhooks
        .clone()
        .rotate_webhook_endpoint_secret(authed(
            KEY_A,
            pb::RotateWebhookEndpointSecretRequest {
                id: endpoint.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret, old);
    t.grant("cus_rotate", 100).await;
    let hits = receiver.wait_for(1).await;
    assert_eq!(hits[0].signature.split(' ').count(), 2);
    assert!(verifies(&old, &hits[0], &hits[0].body));
    assert!(verifies(&rotated.secret, &hits[0], &hits[0].body));
}

async fn a_test_webhook_reaches_one_endpoint(t: &TestNotifier) {
    let (receiver, url, _server) = Receiver::start().await;
    let (endpoint, secret) = t.endpoint(&url, &["invoice.paid"]).await;
    let sent = t
        .webhooks
        .clone()
        .send_test_webhook(authed(
            KEY_A,
            pb::SendTestWebhookRequest {
                webhook_endpoint: endpoint.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook_delivery
        .unwrap();
    assert_eq!(sent.event_type, "webhook_endpoint.test");
    let hits = receiver.wait_for(1).await;
    assert_eq!(hits[0].id, sent.event);
    assert!(verifies(&secret, &hits[0], &hits[0].body));
    let body: serde_json::Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["type"], "webhook_endpoint.test");
}

async fn endpoints_refuse_bad_input_and_other_accounts(t: &TestNotifier) {
    let mut client = t.webhooks.clone();
    let bad = client
        .create_webhook_endpoint(authed(
            KEY_A,
            pb::CreateWebhookEndpointRequest {
                url: "ftp://example.com/hook".into(),
                enabled_events: vec!["Invoice.Paid".into()],
                description: "x".repeat(501),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        billing_testkit::bad_request_fields(&bad),
        ["enabled_events[0]", "description"]
    );
    let bad_url = client
        .create_webhook_endpoint(authed(
            KEY_A,
            pb::CreateWebhookEndpointRequest {
                url: "ftp://example.com/hook".into(),
                enabled_events: vec!["*".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(billing_testkit::bad_request_fields(&bad_url), ["url"]);
    let (endpoint, _) = t.endpoint("http://127.0.0.1:9/hook", &["*"]).await;
    let foreign = client
        .get_webhook_endpoint(authed(
            KEY_B,
            pb::GetWebhookEndpointRequest {
                id: endpoint.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::NotFound);
    let listed = client
        .list_webhook_endpoints(authed(KEY_A, pb::ListWebhookEndpointsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.webhook_endpoints.len(), 1);
    client
        .delete_webhook_endpoint(authed(
            KEY_A,
            pb::DeleteWebhookEndpointRequest {
                id: endpoint.id.clone(),
            },
        ))
        .await
        .unwrap();
    let gone = client
        .get_webhook_endpoint(authed(
            KEY_A,
            pb::GetWebhookEndpointRequest { id: endpoint.id },
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}
