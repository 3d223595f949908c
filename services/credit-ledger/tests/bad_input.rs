//! Every invalid field is INVALID_ARGUMENT naming the field and writes
//! nothing; keys and accounts are enforced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::common::v1 as common_pb;
use billing_proto::ledger::v1 as pb;
use billing_testkit::bad_request_fields as fields_of;
use chrono::TimeDelta;
use common::*;

fn unit_amount(id: &str, value: &str) -> Option<common_pb::Amount> {
    Some(common_pb::Amount {
        kind: Some(common_pb::amount::Kind::CustomPricingUnit(
            common_pb::CustomPricingUnitAmount {
                id: id.into(),
                value: value.into(),
            },
        )),
    })
}

async fn invalid_grants_name_the_field_and_write_nothing(t: &TestLedger) {
    let unit = t
        .client()
        .create_pricing_unit(authed(
            KEY_A,
            pb::CreatePricingUnitRequest {
                display_name: "API credits".into(),
                scale: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .pricing_unit
        .unwrap();
    let base = || grant_request("cus_bad", "ok", 100);
    type Edit = Box<dyn Fn(&mut pb::CreateCreditGrantRequest)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("customer", Box::new(|r| r.customer.clear())),
        ("amount", Box::new(|r| r.amount = None)),
        ("amount.monetary.value", Box::new(|r| r.amount = usd(0))),
        ("amount.monetary.value", Box::new(|r| r.amount = usd(-5))),
        (
            "amount.monetary.currency",
            Box::new(|r| r.amount = money("usx", 5)),
        ),
        (
            "amount.monetary.currency",
            Box::new(|r| r.amount = money("USD", 5)),
        ),
        (
            "amount.custom_pricing_unit.id",
            Box::new(|r| r.amount = unit_amount("pu_unknown", "1")),
        ),
        ("amount.custom_pricing_unit.value", {
            let id = unit.id.clone();
            Box::new(move |r| r.amount = unit_amount(&id, "1.005"))
        }),
        ("amount.custom_pricing_unit.value", {
            let id = unit.id.clone();
            Box::new(move |r| r.amount = unit_amount(&id, "ten"))
        }),
        ("priority", Box::new(|r| r.priority = Some(101))),
        (
            "expires_at",
            Box::new(|r| {
                r.effective_at = ts(t0());
                r.expires_at = ts(t0());
            }),
        ),
        (
            "expires_at",
            Box::new(|r| r.expires_at = ts(t0() - TimeDelta::hours(1))),
        ),
        ("name", Box::new(|r| r.name = "n".repeat(101))),
        (
            "metadata[k]",
            Box::new(|r| {
                r.metadata.insert("k".into(), "v".repeat(501));
            }),
        ),
        (
            "metadata",
            Box::new(|r| {
                for i in 0..51 {
                    r.metadata.insert(format!("k{i}"), "v".into());
                }
            }),
        ),
        (
            "applicability_config.scope",
            Box::new(|r| {
                r.applicability_config = Some(pb::ApplicabilityConfig {
                    scope: Some(pb::ApplicabilityScope {
                        price_type: pb::PriceType::Metered.into(),
                        prices: vec!["price_a".into()],
                    }),
                });
            }),
        ),
        (
            "applicability_config.scope",
            Box::new(|r| r.applicability_config = None),
        ),
        ("request_id", Box::new(|r| r.request_id = "r".repeat(101))),
    ];
    for (field, edit) in &cases {
        let mut request = base();
        edit(&mut request);
        let status = t
            .client()
            .create_credit_grant(authed(KEY_A, request))
            .await
            .unwrap_err();
        assert!(
            fields_of(&status).iter().any(|f| f == field),
            "expected {field}, got {:?}",
            fields_of(&status)
        );
    }
    let grants = t
        .client()
        .list_credit_grants(authed(KEY_A, pb::ListCreditGrantsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .credit_grants;
    assert!(grants.is_empty(), "rejected requests wrote {grants:?}");
}

async fn invalid_lists_and_applications(t: &TestLedger) {
    let status = t
        .client()
        .list_credit_grants(authed(
            KEY_A,
            pb::ListCreditGrantsRequest {
                page_size: -1,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&status), vec!["page_size"]);
    let status = t
        .client()
        .list_credit_grants(authed(
            KEY_A,
            pb::ListCreditGrantsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&status), vec!["page_token"]);

    let mut request = apply_request(
        t,
        "",
        "in_1",
        vec![line("l1", "price_a", 0), line("l1", "", 5)],
    );
    request.period_end = None;
    let status = t
        .client()
        .apply_credits(authed(KEY_A, request))
        .await
        .unwrap_err();
    let fields = fields_of(&status);
    for field in [
        "customer",
        "period_end",
        "lines[0].amount.monetary.value",
        "lines[1].invoice_line_item",
        "lines[1].price",
    ] {
        // lines[0].amount is positive-checked on resolve, after the other fields pass.
        if field.starts_with("lines[0]") {
            continue;
        }
        assert!(
            fields.iter().any(|f| f == field),
            "expected {field} in {fields:?}"
        );
    }
    let request = apply_request(t, "cus_x", "in_1", vec![line("l1", "price_a", 0)]);
    let status = t
        .client()
        .apply_credits(authed(KEY_A, request))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&status), vec!["lines[0].amount.monetary.value"]);
    let request = apply_request(t, "cus_x", "in_1", vec![]);
    let status = t
        .client()
        .apply_credits(authed(KEY_A, request))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&status), vec!["lines"]);
    let status = t
        .client()
        .create_pricing_unit(authed(
            KEY_A,
            pb::CreatePricingUnitRequest {
                scale: 10,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&status), vec!["display_name", "scale"]);
}

async fn keys_and_accounts_are_enforced(t: &TestLedger) {
    let grant = create_grant(t, grant_request("cus_a", "mine", 100)).await;
    let get = |key: &'static str| {
        let mut client = t.client();
        let id = grant.id.clone();
        async move {
            client
                .get_credit_grant(authed(key, pb::GetCreditGrantRequest { id }))
                .await
        }
    };
    assert_eq!(
        get("sk_wrong").await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let status = t
        .client()
        .get_credit_grant(pb::GetCreditGrantRequest {
            id: grant.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        get(KEY_B).await.unwrap_err().code(),
        tonic::Code::NotFound,
        "another account's grant"
    );
    assert!(get(KEY_A).await.is_ok());
    let status = t
        .client()
        .void_credit_grant(authed(
            KEY_B,
            pb::VoidCreditGrantRequest {
                id: grant.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    // Account B sees none of A's grants or balances.
    let summary = t
        .client()
        .get_credit_balance_summary(authed(
            KEY_B,
            pb::GetCreditBalanceSummaryRequest {
                pool: Vec::new(),
                customer: "cus_a".into(),
                filter: None,
                unbilled_lines: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(summary.balances.is_empty());
}

/// Bytes that are not the method's message are the caller's error, never
/// INTERNAL (reserved for our own faults); a request over the message-size
/// limit is RESOURCE_EXHAUSTED naming the limit; errors never echo a huge id.
async fn undecodable_and_oversized_requests_are_the_callers_error(t: &TestLedger) {
    use tonic::Code;
    const GET_GRANT: &str = "/billing.ledger.v1.LedgerService/GetCreditGrant";
    const CREATE_GRANT: &str = "/billing.ledger.v1.LedgerService/CreateCreditGrant";
    let cases: [(&str, Vec<u8>); 4] = [
        // Field 1 (id, a string) holding invalid UTF-8.
        ("invalid utf-8", vec![0x0a, 0x02, 0xff, 0xfe]),
        // Field 1 declared 16 bytes long, 1 byte present.
        ("truncated", vec![0x0a, 0x10, 0x61]),
        // Field 1 with wire type 7, which does not exist.
        ("bad wire type", vec![0x0f, 0x00]),
        // Field 1 nested 200 deep: not a valid message for either method.
        ("recursion", deep_nesting(200)),
    ];
    for (what, body) in cases {
        for path in [GET_GRANT, CREATE_GRANT] {
            let status = billing_testkit::raw::call(t.channel.clone(), path, KEY_A, body.clone())
                .await
                .expect_err(what);
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{what} on {path}: {status:?}"
            );
        }
    }

    let limit = 4 * 1024 * 1024;
    let mut oversized = vec![0x0a];
    let huge_id = vec![b'a'; limit + 1];
    prost::encoding::encode_varint(huge_id.len() as u64, &mut oversized);
    oversized.extend_from_slice(&huge_id);
    let status = billing_testkit::raw::call(t.channel.clone(), GET_GRANT, KEY_A, oversized)
        .await
        .expect_err("oversized");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&limit.to_string()),
        "{}",
        status.message()
    );

    // A long unknown id is NOT_FOUND with a short message.
    let long_id = format!("credgr_{}", "A".repeat(90));
    let status = t
        .client()
        .get_credit_grant(authed(KEY_A, pb::GetCreditGrantRequest { id: long_id }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().len() < 120, "{}", status.message());
}

/// A NUL or other control character in any string is INVALID_ARGUMENT
/// naming the field, the same on SQLite (which would store it) and on
/// PostgreSQL (which cannot: it answered INTERNAL before); so is a string
/// over 4 KiB; nothing is written.
async fn control_characters_and_huge_strings_are_refused_alike(t: &TestLedger) {
    let base = grant_request("cus_a", "promo", 500);
    let cases = [
        (
            pb::CreateCreditGrantRequest {
                name: "promo\0".into(),
                ..base.clone()
            },
            "name",
        ),
        (
            pb::CreateCreditGrantRequest {
                customer: "cus_\u{1b}[31m".into(),
                ..base.clone()
            },
            "customer",
        ),
        (
            pb::CreateCreditGrantRequest {
                metadata: [("source".to_owned(), "a\0b".to_owned())].into(),
                ..base.clone()
            },
            "metadata[source]",
        ),
        (
            pb::CreateCreditGrantRequest {
                request_id: "key\0".into(),
                ..base.clone()
            },
            "request_id",
        ),
        (
            pb::CreateCreditGrantRequest {
                name: "x".repeat(5000),
                ..base.clone()
            },
            "name",
        ),
    ];
    for (request, field) in cases {
        let status = t
            .client()
            .create_credit_grant(authed(KEY_A, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field}");
        assert_eq!(fields_of(&status), vec![field.to_owned()]);
    }
    let status = t
        .client()
        .get_credit_grant(authed(
            KEY_A,
            pb::GetCreditGrantRequest {
                id: "credgr_\0".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&status), vec!["id".to_owned()]);
    let listed = t
        .client()
        .list_credit_grants(authed(KEY_A, pb::ListCreditGrantsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.credit_grants.is_empty(), "nothing was written");
    // Tab, CR and LF are text, not control.
    t.client()
        .create_credit_grant(authed(
            KEY_A,
            pb::CreateCreditGrantRequest {
                name: "line one\nline two\ttab".into(),
                ..base
            },
        ))
        .await
        .unwrap();
}

/// A grant that would take a customer's balance past i64 is refused naming
/// `amount`; the balance summary never shows a saturated number.
async fn a_balance_past_i64_is_refused(t: &TestLedger) {
    create_grant(t, grant_request("cus_whale", "big", i64::MAX - 10)).await;
    let status = t
        .client()
        .create_credit_grant(authed(KEY_A, grant_request("cus_whale", "one more", 11)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields_of(&status), vec!["amount".to_owned()]);
    create_grant(t, grant_request("cus_whale", "the last ten", 10)).await;
    let summary = t
        .client()
        .get_credit_balance_summary(authed(
            KEY_A,
            pb::GetCreditBalanceSummaryRequest {
                pool: Vec::new(),
                customer: "cus_whale".into(),
                filter: None,
                unbilled_lines: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value_of(&summary.balances[0].available_balance), i64::MAX);
}

/// `depth` length-delimited fields 1 nested in one another.
fn deep_nesting(depth: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..depth {
        let mut outer = vec![0x0a];
        prost::encoding::encode_varint(body.len() as u64, &mut outer);
        outer.extend_from_slice(&body);
        body = outer;
    }
    body
}

backends!(
    invalid_grants_name_the_field_and_write_nothing,
    invalid_lists_and_applications,
    keys_and_accounts_are_enforced,
    undecodable_and_oversized_requests_are_the_callers_error,
    control_characters_and_huge_strings_are_refused_alike,
    a_balance_past_i64_is_refused,
);
