//! A customer billed for metered usage, through the services' APIs: the
//! console's browser test and its benchmark start from it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use billing_proto::invoicing::v1 as inv;
use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use billing_proto::meter::v1 as meter;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_testkit::authed;
use tonic::transport::Channel;

/// What [`metered_customer`] made.
pub struct Metered {
    /// `cus_…`
    pub customer: String,
    /// The 10¢-per-call price.
    pub price: String,
    /// The customer's monthly subscription to it.
    pub subscription: String,
}

/// A connected channel to `addr` (`host:port`).
pub async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A customer of `key`'s account.
pub async fn customer(invoicing: &str, key: &str, name: &str) -> String {
    InvoicingServiceClient::new(channel(invoicing).await)
        .create_customer(authed(
            key,
            inv::CreateCustomerRequest {
                name: name.into(),
                email: "billing@acme.test".into(),
                external_id: "crm-acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id
}

/// A `api_call` meter, a 10¢ price on it, customer `name` subscribed
/// monthly from now, and `usage` calls after the subscription's start.
pub async fn metered_customer(
    meter_addr: &str,
    invoicing_addr: &str,
    key: &str,
    name: &str,
    usage: &str,
) -> Metered {
    let mut invoicing = InvoicingServiceClient::new(channel(invoicing_addr).await);
    let mut meters = MeterServiceClient::new(channel(meter_addr).await);
    let meter = meters
        .create_meter(authed(
            key,
            meter::CreateMeterRequest {
                event_name: "api_call".into(),
                display_name: "API calls".into(),
                aggregation: meter::Aggregation::Sum.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .meter
        .unwrap()
        .id;
    let price = invoicing
        .create_price(authed(
            key,
            inv::CreatePriceRequest {
                currency: "usd".into(),
                meter,
                billing_scheme: inv::BillingScheme::PerUnit.into(),
                unit_amount_decimal: "10".into(),
                nickname: "API calls".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap()
        .id;
    let customer = customer(invoicing_addr, key, name).await;
    let subscription = invoicing
        .create_subscription(authed(
            key,
            inv::CreateSubscriptionRequest {
                customer: customer.clone(),
                items: vec![inv::SubscriptionItemInput {
                    price: price.clone(),
                }],
                billing_interval: inv::BillingInterval::Month.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap()
        .id;
    let now = chrono::Utc::now();
    let ingested = meters
        .ingest_events(authed(
            key,
            meter::IngestEventsRequest {
                events: vec![meter::MeterEvent {
                    event_name: "api_call".into(),
                    identifier: format!("evt_{customer}"),
                    // After the subscription's start (to the microsecond).
                    timestamp: Some(prost_types::Timestamp {
                        seconds: now.timestamp(),
                        nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap(),
                    }),
                    payload: BTreeMap::from([
                        ("customer".to_owned(), customer.clone()),
                        ("value".to_owned(), usage.to_owned()),
                    ]),
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ingested.accepted, 1, "{ingested:?}");
    Metered {
        customer,
        price,
        subscription,
    }
}
