//! SIGTERM during a stream of calls: the ledger process stops accepting,
//! finishes what it accepted, and exits 0. Every call either succeeded and
//! is durable, or was refused (never started) and wrote nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use billing_e2e::scenario::usd;
use billing_e2e::*;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::Backend;
use tonic::Code;

const CLIENTS: usize = 8;

fn grant(request_id: String) -> ledger::CreateCreditGrantRequest {
    ledger::CreateCreditGrantRequest {
        request_id,
        customer: "cus_sigterm".into(),
        name: "load".into(),
        amount: usd(100),
        applicability_config: Some(ledger::ApplicabilityConfig {
            scope: Some(ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: vec![],
            }),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_accepted_calls_and_exits_zero() {
    let Some(dbs) = Databases::new(Backend::Sqlite).await else {
        return;
    };
    let process = ledger(&dbs.ledger, "127.0.0.1:0");
    let pid = process.pid();
    let channel = process.channel();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = LedgerServiceClient::new(channel.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let request_id = format!("grant-{c}-{n}");
                    let result = client
                        .create_credit_grant(authed(grant(request_id.clone())))
                        .await;
                    let refused = result.is_err();
                    outcomes.push((
                        request_id,
                        result.map(|r| r.into_inner().credit_grant.unwrap().id),
                    ));
                    if refused {
                        break;
                    }
                }
                outcomes
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || process.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(exit.success(), "the ledger exits 0 after SIGTERM: {exit:?}");

    let mut succeeded = BTreeMap::new();
    let mut refused = 0;
    for client in clients {
        for (request_id, outcome) in client.await.unwrap() {
            match outcome {
                Ok(id) => {
                    succeeded.insert(request_id, id);
                }
                Err(status) => {
                    // Refused: a new connection is refused (UNAVAILABLE), a
                    // stream the server never started is cancelled with the
                    // closing connection, or a stream opened as the server's
                    // GOAWAY (NO_ERROR) was in flight is rejected by the
                    // client's HTTP/2 layer (tonic reports that as INTERNAL,
                    // with the GOAWAY as its source). In each case the server
                    // never ran the call, and nothing may be written, which
                    // the check below proves.
                    let go_away = status.code() == Code::Internal
                        && format!("{status:?}").contains("GoAway(b\"\", NO_ERROR, Remote)");
                    assert!(
                        matches!(status.code(), Code::Unavailable | Code::Cancelled) || go_away,
                        "a call failed other than by refusal: {status:?}"
                    );
                    refused += 1;
                }
            }
        }
    }
    assert!(succeeded.len() > CLIENTS, "the load ran before the signal");
    assert!(refused > 0, "calls after the signal were refused");

    // Restarted: every acknowledged grant is there, nothing else is.
    let restarted = ledger(&dbs.ledger, "127.0.0.1:0");
    let mut client = LedgerServiceClient::new(restarted.channel());
    let mut stored = 0;
    let mut token = String::new();
    loop {
        let page = client
            .list_credit_grants(authed(ledger::ListCreditGrantsRequest {
                customer: "cus_sigterm".into(),
                page_size: 100,
                page_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        for grant in &page.credit_grants {
            assert!(
                succeeded.values().any(|id| id == &grant.id),
                "unacknowledged grant {}",
                grant.id
            );
        }
        stored += page.credit_grants.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        stored,
        succeeded.len(),
        "every acknowledged grant is durable"
    );
    drop(restarted);
    dbs.drop_all().await;
}
