//! Money is granted only to customers invoicing knows (issue 12, item 5):
//! the ledger asks invoicing, with its internal key, before it writes a
//! grant, and caches the positive answers. On both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::ledger::v1 as ledger;
use common::*;
use tonic::Code;

async fn create(
    t: &Suite,
    key: &str,
    customer: &str,
) -> Result<ledger::CreditGrant, tonic::Status> {
    t.ledger
        .clone()
        .create_credit_grant(authed(key, grant_request(customer, "credits", 1_000)))
        .await
        .map(|r| r.into_inner().credit_grant.unwrap())
}

async fn grants_of(t: &Suite, key: &str, customer: &str) -> usize {
    t.ledger
        .clone()
        .list_credit_grants(authed(
            key,
            ledger::ListCreditGrantsRequest {
                customer: customer.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grants
        .len()
}

async fn grants_need_a_customer_invoicing_knows(t: &Suite) {
    let acme = t
        .invoicing
        .clone()
        .create_customer(authed(
            KEY_A,
            billing_proto::invoicing::v1::CreateCustomerRequest {
                external_id: "acme".into(),
                name: "Acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id;
    assert!(create(t, KEY_A, &acme).await.is_ok());

    // An id invoicing never made: NOT_FOUND, nothing written.
    let unknown = create(t, KEY_A, "cus_nobody").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("customer"), "{unknown:?}");
    assert_eq!(grants_of(t, KEY_A, "cus_nobody").await, 0);

    // An external id: refused with what is expected instead.
    let external = create(t, KEY_A, "acme").await.unwrap_err();
    assert_eq!(billing_testkit::bad_request_fields(&external), ["customer"]);
    assert!(external.message().contains("cus_"), "{external:?}");

    // Another account's customer is unknown here.
    let other = create(t, KEY_B, &acme).await.unwrap_err();
    assert_eq!(other.code(), Code::NotFound, "{other:?}");
    assert_eq!(grants_of(t, KEY_B, &acme).await, 0);

    // Invoicing down: a customer checked before still gets grants (cached);
    // a new one cannot be checked: UNAVAILABLE, nothing written.
    t.stop_invoicing().await;
    assert!(create(t, KEY_A, &acme).await.is_ok());
    let down = create(t, KEY_A, "cus_unchecked").await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(down.message().contains("nothing was written"), "{down:?}");
    assert_eq!(grants_of(t, KEY_A, "cus_unchecked").await, 0);
    assert_eq!(grants_of(t, KEY_A, &acme).await, 2);
}

backends!(grants_need_a_customer_invoicing_knows);
