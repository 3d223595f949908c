//! The test clock moves the whole process's time, so only a key with the
//! `test_clock` scope may use it: not another key of the same account, not
//! the internal service key acting for the account (issue 12, item 4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use billing_e2e::*;
use billing_proto::invoicing::v1 as inv;
use billing_proto::invoicing::v1::test_clock_service_client::TestClockServiceClient;
use billing_testkit::Backend;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_test_clock_key_moves_the_clock() {
    let Some(dbs) = Databases::new(Backend::Sqlite).await else {
        return;
    };
    let ledger = ledger(&dbs.ledger, "127.0.0.1:0");
    let meter = meter(&dbs.meter);
    let invoicing = invoicing(&dbs.invoicing, ledger.addr, meter.addr, None);
    let mut clock = TestClockServiceClient::new(invoicing.channel());

    let now = clock
        .get_test_clock(authed(inv::GetTestClockRequest {}))
        .await
        .expect("the test_clock key reads it")
        .into_inner()
        .now;
    let mut internal = billing_testkit::authed(INTERNAL_KEY, inv::GetTestClockRequest {});
    internal
        .metadata_mut()
        .insert("x-billing-account", "acct_e2e".parse().unwrap());
    for (who, request) in [
        (
            "a key without the scope",
            billing_testkit::authed(PLAIN_KEY, inv::GetTestClockRequest {}),
        ),
        ("the internal key", internal),
    ] {
        let refused = clock.get_test_clock(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{who}: {refused:?}");
        assert!(refused.message().contains("test_clock"), "{who}");
    }
    let mut later = now.unwrap();
    later.seconds += 3_600;
    let refused = clock
        .advance_test_clock(billing_testkit::authed(
            PLAIN_KEY,
            inv::AdvanceTestClockRequest {
                frozen_time: Some(later),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let unchanged = clock
        .get_test_clock(authed(inv::GetTestClockRequest {}))
        .await
        .unwrap()
        .into_inner()
        .now;
    assert_eq!(unchanged, now, "a refused call moved nothing");
    drop((invoicing, meter, ledger));
    dbs.drop_all().await;
}
