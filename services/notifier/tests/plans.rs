//! Every query the notifier runs costs what its object holds, not what the
//! account (or the whole notifier) holds: the same check as
//! `services/invoicing/tests/plans.rs` (the machinery is shared), over a
//! workload that calls every WebhookService RPC and runs the followers,
//! the delivery worker (deliveries, retries, 410), the sink's queries and
//! the purge, on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../invoicing/tests/plan_check/mod.rs"]
#[macro_use]
mod plan_check;

use billing_proto::webhooks::v1 as pb;
use billing_testkit::{Backend, Harness};
use common::*;
use plan_check::Recorder;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_uses_an_index_prefix() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Recorder))
        .expect("the only subscriber in this binary");
    let Some(t) = TestNotifier::start(Backend::Postgres).await else {
        return;
    };
    workload(&t).await;

    let missed = plan_check::missed(|path| path.starts_with("/billing.webhooks."));
    assert!(missed.is_empty(), "the workload never called {missed:?}");

    let (explained, failures) =
        plan_check::check_recorded(&[t.notifier_db.url(), t.ledger_db.url()]).await;
    println!("{explained} distinct statements explained");
    t.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(explained > 20, "only {explained} statements were recorded");
}

async fn workload(t: &TestNotifier) {
    let mut client = t.webhooks.clone();
    let (receiver, url, _server) = Receiver::start().await;
    receiver.script.lock().unwrap().extend([500, 410]);
    // Two endpoints: one retried then gone (disabled), one healthy.
    let created = rpc!(
        "CreateWebhookEndpoint",
        client.create_webhook_endpoint(authed(
            KEY_A,
            pb::CreateWebhookEndpointRequest {
                url: url.clone(),
                enabled_events: vec!["credit_balance.created".into()],
                ..Default::default()
            }
        ))
    );
    let gone = created.webhook_endpoint.unwrap().id;
    t.grant("cus_plans", 100).await;
    t.wait_deliveries(&gone, |d| {
        d.len() == 1 && d[0].status == pb::WebhookDeliveryStatus::Failed as i32
    })
    .await;
    let (healthy, _) = t.endpoint(&url, &["*"]).await;
    t.grant("cus_plans", 200).await;
    t.wait_deliveries(&healthy.id, |d| {
        !d.is_empty()
            && d.iter()
                .all(|d| d.status == pb::WebhookDeliveryStatus::Delivered as i32)
    })
    .await;

    rpc!(
        "GetWebhookEndpoint",
        client.get_webhook_endpoint(authed(
            KEY_A,
            pb::GetWebhookEndpointRequest { id: gone.clone() }
        ))
    );
    let first = rpc!(
        "ListWebhookEndpoints",
        client.list_webhook_endpoints(authed(
            KEY_A,
            pb::ListWebhookEndpointsRequest {
                page_size: 1,
                ..Default::default()
            }
        ))
    );
    rpc!(
        "ListWebhookEndpoints",
        client.list_webhook_endpoints(authed(
            KEY_A,
            pb::ListWebhookEndpointsRequest {
                page_size: 1,
                page_token: first.next_page_token
            }
        ))
    );
    rpc!(
        "UpdateWebhookEndpoint",
        client.update_webhook_endpoint(authed(
            KEY_A,
            pb::UpdateWebhookEndpointRequest {
                id: gone.clone(),
                disabled: Some(false),
                description: Some("back".into()),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "RotateWebhookEndpointSecret",
        client.rotate_webhook_endpoint_secret(authed(
            KEY_A,
            pb::RotateWebhookEndpointSecretRequest {
                id: healthy.id.clone(),
                ..Default::default()
            }
        ))
    );
    // Deliveries by every filter, and a second page.
    let all = t.deliveries(&gone).await;
    for (endpoint, event, status) in [
        (String::new(), String::new(), 0),
        (gone.clone(), String::new(), 0),
        (String::new(), all[0].event.clone(), 0),
        (
            String::new(),
            String::new(),
            pb::WebhookDeliveryStatus::Failed as i32,
        ),
        (
            healthy.id.clone(),
            String::new(),
            pb::WebhookDeliveryStatus::Delivered as i32,
        ),
    ] {
        let request = |page_token: String| pb::ListWebhookDeliveriesRequest {
            webhook_endpoint: endpoint.clone(),
            event: event.clone(),
            status,
            page_size: 1,
            page_token,
        };
        let first = rpc!(
            "ListWebhookDeliveries",
            client.list_webhook_deliveries(authed(KEY_A, request(String::new())))
        );
        rpc!(
            "ListWebhookDeliveries",
            client.list_webhook_deliveries(authed(KEY_A, request(first.next_page_token)))
        );
    }
    rpc!(
        "RetryWebhookDelivery",
        client.retry_webhook_delivery(authed(
            KEY_A,
            pb::RetryWebhookDeliveryRequest {
                id: all[0].id.clone()
            }
        ))
    );
    rpc!(
        "SendTestWebhook",
        client.send_test_webhook(authed(
            KEY_A,
            pb::SendTestWebhookRequest {
                webhook_endpoint: healthy.id.clone()
            }
        ))
    );
    t.wait_deliveries(&gone, |d| {
        d.iter()
            .all(|d| d.status == pb::WebhookDeliveryStatus::Delivered as i32)
    })
    .await;
    // The sink's queries and the purge.
    let store = t.notifier.notifier.store();
    let now = t.clock.now();
    for event in store.unpublished(10).await.unwrap() {
        store
            .mark_published(&event.account, &event.id, now)
            .await
            .unwrap();
    }
    store.purge(0).await.unwrap();
    rpc!(
        "DeleteWebhookEndpoint",
        client
            .delete_webhook_endpoint(authed(KEY_A, pb::DeleteWebhookEndpointRequest { id: gone }))
    );
}
