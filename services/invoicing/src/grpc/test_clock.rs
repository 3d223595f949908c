//! `billing.invoicing.v1.TestClockService`: moves the manual clock and runs
//! the worker once, so a test sees the period close without sleeping.
//!
//! A development tool. The clock is the whole process's, so moving it
//! moves every account's time: only a key with the `test_clock` scope may
//! read or move it, and only a process built to allow it serves it
//! (`INVOICING_TEST_CLOCK=true` is refused at start-up by a release build
//! without the `test-clock` feature).

use billing_proto::invoicing::v1 as pb;
use billing_proto::invoicing::v1::test_clock_service_server::TestClockService;
use billing_server::auth::{Principal, principal};
use billing_server::clock::Clock;
use billing_server::status::{FieldViolation, invalid_argument};
use billing_server::time::{from_proto, to_proto};
use tonic::{Request, Response, Status};

use crate::jobs::worker::Worker;

/// The test clock service.
#[derive(Debug, Clone)]
pub struct TestClockGrpc {
    clock: Clock,
    worker: Worker,
}

impl TestClockGrpc {
    /// Serves `clock`; `worker` ticks after each move.
    pub fn new(clock: Clock, worker: Worker) -> Self {
        Self { clock, worker }
    }
}

#[tonic::async_trait]
impl TestClockService for TestClockGrpc {
    async fn get_test_clock(
        &self,
        request: Request<pb::GetTestClockRequest>,
    ) -> Result<Response<pb::GetTestClockResponse>, Status> {
        may_use(principal(&request)?)?;
        Ok(Response::new(pb::GetTestClockResponse {
            now: Some(to_proto(self.clock.now())),
        }))
    }

    async fn advance_test_clock(
        &self,
        request: Request<pb::AdvanceTestClockRequest>,
    ) -> Result<Response<pb::AdvanceTestClockResponse>, Status> {
        may_use(principal(&request)?)?;
        let body = request.into_inner();
        let field = "frozen_time";
        let time = body
            .frozen_time
            .as_ref()
            .ok_or_else(|| FieldViolation::new(field, "is required"))
            .and_then(|t| from_proto(t, field))
            .map_err(|v| invalid_argument(&[v]))?;
        if time < self.clock.now() {
            return Err(invalid_argument(&[FieldViolation::new(
                field,
                "must not be before the clock's current time",
            )]));
        }
        self.clock.set(time);
        let report = self.worker.tick().await;
        tracing::info!(?report, "test clock advanced");
        Ok(Response::new(pb::AdvanceTestClockResponse {
            now: Some(to_proto(self.clock.now())),
        }))
    }
}

/// The test clock needs a key with the `test_clock` scope.
fn may_use(caller: Principal) -> Result<(), Status> {
    if caller.can_move_test_clock {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "TestClockService needs an API key with the test_clock scope \
             (ACCOUNT:SHA256HEX:test_clock in BILLING_API_KEYS); it moves the whole process's clock",
        ))
    }
}
