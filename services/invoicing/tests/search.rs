//! ListCustomers' `query`: the console's customer search. Name, e-mail,
//! external id or id containing the text, case-insensitive, newest first,
//! paged; LIKE's own characters match only themselves; another account's
//! customers never appear; an over-long query is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::invoicing::v1 as pb;
use billing_testkit::{authed, bad_request_fields};
use common::*;
use tonic::Code;

backends!(search_matches_name_email_and_external_id_in_pages,);

async fn create(t: &Suite, key: &str, name: &str, email: &str, external_id: &str) -> String {
    t.invoicing
        .clone()
        .create_customer(authed(
            key,
            pb::CreateCustomerRequest {
                name: name.into(),
                email: email.into(),
                external_id: external_id.into(),
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

/// Every match of `query`, walking the pages `page_size` at a time.
async fn search(t: &Suite, key: &str, query: &str, page_size: i32) -> Vec<String> {
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = t
            .invoicing
            .clone()
            .list_customers(authed(
                key,
                pb::ListCustomersRequest {
                    page_size,
                    page_token,
                    query: query.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        found.extend(page.customers.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            return found;
        }
        page_token = page.next_page_token;
    }
}

async fn search_matches_name_email_and_external_id_in_pages(t: &Suite) {
    let acme = create(t, KEY_A, "Acme Corp", "billing@acme.test", "crm-1").await;
    let ops = create(t, KEY_A, "Operations", "ops@ACME.io", "crm-2").await;
    let globex = create(t, KEY_A, "Globex", "finance@globex.test", "crm-42").await;
    let percent = create(t, KEY_A, "100% Reliable", "", "").await;
    let _abc = create(t, KEY_A, "abc", "", "").await;
    let _other = create(t, KEY_B, "Acme in account B", "", "").await;

    // Newest first, case-insensitive, name or e-mail; page by page.
    assert_eq!(
        search(t, KEY_A, "ACME", 1).await,
        [ops.clone(), acme.clone()]
    );
    assert_eq!(search(t, KEY_A, "acme", 20).await, [ops, acme.clone()]);
    assert_eq!(
        search(t, KEY_A, "crm-42", 20).await,
        std::slice::from_ref(&globex)
    );
    assert_eq!(search(t, KEY_A, &globex, 20).await, [globex]);
    // LIKE's wildcards are plain characters in a query.
    assert_eq!(search(t, KEY_A, "%", 20).await, [percent]);
    assert_eq!(search(t, KEY_A, "a_c", 20).await, Vec::<String>::new());
    // Another account sees only its own.
    assert_eq!(search(t, KEY_B, "acme", 20).await.len(), 1);
    assert!(!search(t, KEY_B, "acme", 20).await.contains(&acme));

    let refused = t
        .invoicing
        .clone()
        .list_customers(authed(
            KEY_A,
            pb::ListCustomersRequest {
                query: "x".repeat(201),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&refused), ["query"]);
}
