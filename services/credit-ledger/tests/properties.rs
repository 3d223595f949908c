//! Random sequences of grant / apply / replay / reverse / void / expire /
//! clock / sweep over gRPC, with the ledger invariants checked by the audit
//! after every step, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::ledger::v1 as pb;
use chrono::TimeDelta;
use common::*;
use credit_ledger::jobs::sweeper::{SweeperOptions, sweep_once};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone)]
enum Op {
    Grant {
        value: i64,
        priority: u32,
        promo: bool,
        expires_h: Option<i64>,
    },
    Apply {
        lines: Vec<i64>,
    },
    Replay {
        invoice: usize,
    },
    Reverse {
        invoice: usize,
    },
    Void {
        grant: usize,
    },
    Expire {
        grant: usize,
    },
    Advance {
        hours: i64,
    },
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1_i64..500, 0_u32..3, any::<bool>(), proptest::option::of(1_i64..72))
            .prop_map(|(value, p, promo, expires_h)| Op::Grant { value, priority: p * 50, promo, expires_h }),
        3 => proptest::collection::vec(1_i64..300, 1..4).prop_map(|lines| Op::Apply { lines }),
        1 => (0_usize..8).prop_map(|invoice| Op::Replay { invoice }),
        1 => (0_usize..8).prop_map(|invoice| Op::Reverse { invoice }),
        1 => (0_usize..8).prop_map(|grant| Op::Void { grant }),
        1 => (0_usize..8).prop_map(|grant| Op::Expire { grant }),
        1 => (1_i64..40).prop_map(|hours| Op::Advance { hours }),
        1 => Just(Op::Sweep),
    ]
}

/// Codes a random sequence may legitimately meet (state conflicts, unknown invoices).
fn expected_refusal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::FailedPrecondition | tonic::Code::NotFound
    )
}

async fn run_sequence(t: &TestLedger, case: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let customer = format!("cus_prop_{case}");
    let mut grants: Vec<String> = Vec::new();
    let mut invoices: Vec<(pb::ApplyCreditsRequest, pb::ApplyCreditsResponse)> = Vec::new();
    for op in ops {
        let mut client = t.client();
        match op {
            Op::Grant {
                value,
                priority,
                promo,
                expires_h,
            } => {
                let mut request = grant_request(&customer, "g", *value);
                request.priority = Some(*priority);
                if *promo {
                    request.category = pb::CreditGrantCategory::Promotional.into();
                }
                request.expires_at = expires_h
                    .map(|h| billing_server::time::to_proto(t.clock.now() + TimeDelta::hours(h)));
                grants.push(create_grant(t, request).await.id);
            }
            Op::Apply { lines } => {
                let invoice = format!("in_{case}_{}", invoices.len());
                let lines = lines
                    .iter()
                    .enumerate()
                    .map(|(i, v)| line(&format!("l{i}"), "price_a", *v))
                    .collect();
                let request = apply_request(t, &customer, &invoice, lines);
                let response = client
                    .apply_credits(authed(KEY_A, request.clone()))
                    .await
                    .unwrap()
                    .into_inner();
                for (credits, asked) in response.lines.iter().zip(&request.lines) {
                    prop_assert!(value_of(&credits.credits_applied) <= value_of(&asked.amount));
                }
                invoices.push((request, response));
            }
            Op::Replay { invoice } => {
                if let Some((request, response)) = invoices.get(*invoice) {
                    let again = client
                        .apply_credits(authed(KEY_A, request.clone()))
                        .await
                        .unwrap()
                        .into_inner();
                    prop_assert_eq!(&again, response);
                }
            }
            Op::Reverse { invoice } => {
                if let Some((request, _)) = invoices.get(*invoice) {
                    let reverse = pb::ReverseCreditsRequest {
                        invoice: request.invoice.clone(),
                    };
                    client
                        .reverse_credits(authed(KEY_A, reverse))
                        .await
                        .unwrap();
                }
            }
            Op::Void { grant } | Op::Expire { grant } => {
                let Some(id) = grants.get(*grant).cloned() else {
                    continue;
                };
                let result = if matches!(op, Op::Void { .. }) {
                    client
                        .void_credit_grant(authed(
                            KEY_A,
                            pb::VoidCreditGrantRequest {
                                id,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| ())
                } else {
                    client
                        .expire_credit_grant(authed(
                            KEY_A,
                            pb::ExpireCreditGrantRequest {
                                id,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| ())
                };
                if let Err(status) = result {
                    prop_assert!(expected_refusal(&status), "{status:?}");
                }
            }
            Op::Advance { hours } => t.clock.advance(TimeDelta::hours(*hours)),
            Op::Sweep => {
                sweep_once(&t.ledger, &SweeperOptions::default())
                    .await
                    .unwrap();
            }
        }
        let report = client
            .audit_ledger(authed(KEY_A, pb::AuditLedgerRequest {}))
            .await
            .unwrap()
            .into_inner();
        prop_assert!(
            report.violations.is_empty(),
            "after {op:?}: {:?}",
            report.violations
        );
    }
    Ok(())
}

async fn random_sequences_keep_the_invariants(t: &TestLedger) {
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = tokio::task::block_in_place(|| {
        runner.run(&proptest::collection::vec(op(), 1..25), |ops| {
            let index = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            handle.block_on(run_sequence(t, index, &ops))
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

backends!(random_sequences_keep_the_invariants);
