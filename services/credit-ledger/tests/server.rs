//! What every server offers besides the ledger: health and reflection, and
//! authentication in front of the ledger only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn health_and_reflection_need_no_key(t: &TestLedger) {
    let channel = t.channel.clone();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", credit_ledger::SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == credit_ledger::SERVICE_NAME),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "{names:?}"
    );
}

/// A call to a service or method this port does not serve names the
/// services it does serve (tonic's own answer has no message).
async fn unimplemented_names_the_services_of_the_port(t: &TestLedger) {
    for path in [
        "/billing.invoicing.v1.InvoicingService/ListInvoices",
        "/billing.ledger.v1.LedgerService/NoSuchMethod",
    ] {
        let status = billing_testkit::raw::call(t.channel.clone(), path, KEY_A, Vec::new())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{path}");
        assert!(
            status.message().starts_with(path)
                && status.message().contains(credit_ledger::SERVICE_NAME)
                && status.message().contains("grpc.health.v1.Health"),
            "{path}: {status:?}"
        );
    }
}

backends!(
    health_and_reflection_need_no_key,
    unimplemented_names_the_services_of_the_port
);
