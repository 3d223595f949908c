//! The money simulator: seeded random operations against a real
//! credit-ledger process, each answer compared with the independent
//! [`crate::model`], while another task kills the process (SIGKILL) and
//! starts it again on the same database.
//!
//! Each account runs its own seeded sequence of operations, one at a time,
//! and the accounts run at once: the interleaving varies from run to run,
//! the operations and every expected answer do not, so a seed reproduces.
//! A call cut by a kill is sent again unchanged (same request id, same
//! invoice) until it is answered: exactly once means the model applies it
//! once and the service's answer agrees.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use billing_proto::common::v1::Amount;
use billing_proto::events::v1 as events;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::fuzz::Rng;
use chrono::NaiveDate;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::model::{self, ApplyRequest, Ledger, Line, Outcome, Time};

/// The customers of every account, and the pool each one draws on.
const CUSTOMERS: &[(&str, &[&str])] = &[
    ("cus_parent", &[]),
    ("cus_child1", &["cus_parent"]),
    ("cus_child2", &["cus_parent"]),
    ("cus_grandchild", &["cus_child1", "cus_parent"]),
];
const PRICES: &[&str] = &["price_a", "price_b", "price_c"];
/// Operations per account before its customers are renewed.
const EPOCH_OPERATIONS: u64 = 2_000;
/// Each account also has a pricing unit of this scale.
const UNIT_SCALE: u32 = 2;
/// The alert thresholds an account may configure (distinct, so the order
/// of one change's events is the order of their thresholds).
const THRESHOLDS: &[i64] = &[50, 500, 1_500, 4_000, 9_000];

/// A simulation run's size and faults.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The seed of every account's sequence.
    pub seed: u64,
    /// Operations in all (spread over the accounts).
    pub operations: u64,
    /// Accounts running at once.
    pub accounts: u64,
    /// Kill and restart the ledger about every this many operations (0: never).
    pub crash_every: u64,
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Operations checked.
    pub operations: u64,
    /// Calls sent again after a kill cut them.
    pub retries: u64,
    /// Kills (SIGKILL and restart).
    pub crashes: u64,
    /// Answers that disagreed with the model (the run stops at the first).
    pub violations: Vec<String>,
    /// Operations by kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Alert events compared with the model's.
    pub alert_events: u64,
}

/// The account key of account `i` and its `BILLING_API_KEYS` entry.
pub fn account_key(i: u64) -> (String, String) {
    let key = format!("sk_sim_account_{i}");
    let entry = format!(
        "acct_sim{i}:{}:apply_credits",
        billing_server::auth::hash_hex(&key)
    );
    (key, entry)
}

fn at(year: i32, month: u32, day: u32) -> Time {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp())
}

fn ts(time: Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time,
        nanos: 0,
    }
}

/// `value` smallest units of `asset` (a currency, or a `pu_…` unit of
/// scale [`UNIT_SCALE`]).
fn money(asset: &str, value: i64) -> Option<Amount> {
    billing_testkit::fixtures::amount_in(asset, value, UNIT_SCALE)
}

/// The asset and smallest units of an amount.
fn value(amount: &Option<Amount>) -> (String, i64) {
    billing_testkit::fixtures::asset_value(amount, UNIT_SCALE)
}

fn now() -> Time {
    billing_server::clock::Clock::system().now().timestamp()
}

/// Whether a call failed because the process went away (send it again).
fn cut(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// A disagreement with the model: what, where, and how to reproduce it.
fn violation(account: &Account, what: &str) -> String {
    format!(
        "seed {} account {} operation {}: {what} (reproduce: just simulate {} <ops>)",
        account.seed, account.index, account.done, account.seed
    )
}

macro_rules! call {
    ($account:expr, $method:ident, $request:expr) => {{
        let started = Instant::now();
        loop {
            let mut request = tonic::Request::new($request.clone());
            request.set_timeout(Duration::from_secs(10));
            let value = format!("Bearer {}", $account.key);
            if let Ok(value) = value.parse() {
                request.metadata_mut().insert("authorization", value);
            }
            match $account.client.$method(request).await {
                Ok(answer) => break Ok(answer.into_inner()),
                Err(status) if cut(&status) && started.elapsed() < Duration::from_secs(120) => {
                    $account.retries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => break Err(status),
            }
        }
    }};
}

/// Compares a refusal with the model's.
fn refusal<T: std::fmt::Debug>(expected: &Outcome<T>, status: &Status) -> Result<(), String> {
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    let fields: Vec<String> = status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    let agrees = match expected {
        Outcome::Invalid(field) => {
            status.code() == Code::InvalidArgument && fields.iter().any(|f| f == field)
        }
        Outcome::Refused(expected_reason) => {
            status.code() == Code::FailedPrecondition && reason == *expected_reason
        }
        Outcome::NotFound => status.code() == Code::NotFound,
        Outcome::Ok(_) => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(format!(
            "the model expected {expected:?}, the service answered {:?} {:?} (reason {reason:?}, fields {fields:?})",
            status.code(),
            status.message()
        ))
    }
}

/// An application or reversal as the model writes it.
fn application(line: &str, grant: &str, amount: &Option<Amount>) -> model::Application {
    model::Application {
        line: line.to_owned(),
        grant: grant.to_owned(),
        amount: value(amount).1,
    }
}

/// Compares the credits an invoice's call moved (in any order) with the
/// model's outcome.
fn agree(
    invoice: &str,
    expected: &Outcome<Vec<model::Application>>,
    answer: Result<Vec<model::Application>, Status>,
) -> Result<(), String> {
    match (expected, answer) {
        (Outcome::Ok(want), Ok(mut got)) => {
            let mut want = want.clone();
            got.sort();
            want.sort();
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "{invoice}: the model moved {want:?}, the service {got:?}"
                ))
            }
        }
        (Outcome::Ok(_), Err(status)) => Err(format!("{invoice}: refused {status:?}")),
        (_, Err(status)) => refusal(expected, &status),
        (_, Ok(got)) => Err(format!(
            "{invoice}: the model expected {expected:?}, got {got:?}"
        )),
    }
}

mod account;
pub mod lifecycle;

use account::Account;

/// Runs `plan` against the ledger listening on `addr`; `restart` kills the
/// process and starts it again on the same database and port (it returns
/// when the new process listens).
pub async fn run(
    plan: Plan,
    addr: std::net::SocketAddr,
    restart: Arc<dyn Fn() + Send + Sync>,
) -> Report {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map(|e| e.connect_timeout(Duration::from_secs(2)).connect_lazy());
    let Ok(channel) = channel else {
        return Report {
            violations: vec![format!("bad address {addr}")],
            ..Report::default()
        };
    };
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let crashes = Arc::new(AtomicU64::new(0));
    let crasher = {
        let (counter, stop, crashes) = (counter.clone(), stop.clone(), crashes.clone());
        let mut rng = Rng::new(plan.seed ^ 0x5eed_c4a5);
        tokio::spawn(async move {
            if plan.crash_every == 0 {
                return;
            }
            let mut next = 1 + rng.below(usize::try_from(2 * plan.crash_every).unwrap_or(1)) as u64;
            while !stop.load(Ordering::Relaxed) {
                if counter.load(Ordering::Relaxed) >= next {
                    let restart = restart.clone();
                    let _ = tokio::task::spawn_blocking(move || restart()).await;
                    crashes.fetch_add(1, Ordering::Relaxed);
                    next +=
                        1 + rng.below(usize::try_from(2 * plan.crash_every).unwrap_or(1)) as u64;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let progress = {
        let (counter, stop, crashes) = (counter.clone(), stop.clone(), crashes.clone());
        let started = Instant::now();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(60)).await;
                println!(
                    "seed {}: {} operations, {} kills after {:.0} s",
                    plan.seed,
                    counter.load(Ordering::Relaxed),
                    crashes.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let per_account = plan.operations / plan.accounts.max(1);
    let tasks: Vec<_> = (0..plan.accounts)
        .map(|index| {
            let (key, _) = account_key(index);
            let mut account = Account {
                index,
                key,
                client: LedgerServiceClient::new(channel.clone()),
                feed: EventServiceClient::new(channel.clone()),
                epoch: 0,
                assets: vec!["usd".into(), "eur".into()],
                sent_grants: Vec::new(),
                model: Ledger::default(),
                rng: Rng::new(plan.seed.wrapping_mul(31).wrapping_add(index + 1)),
                seed: plan.seed,
                done: 0,
                retries: 0,
                kinds: BTreeMap::new(),
            };
            let (counter, stop) = (counter.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failure = account.setup().await.err();
                for _ in 0..per_account {
                    if failure.is_some() {
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(what) = account.step().await {
                        failure = Some(what);
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                if failure.is_none() {
                    // A last full check of every customer, and of the events.
                    for customer in account.customers() {
                        if let Err(what) = account.check(&customer, true).await {
                            failure = Some(violation(&account, &format!("final check: {what}")));
                            break;
                        }
                    }
                }
                if failure.is_none()
                    && let Err(what) = account.check_events().await
                {
                    failure = Some(violation(&account, &format!("events: {what}")));
                }
                let events = account.model.events.len() as u64;
                (
                    account.done,
                    account.retries,
                    account.kinds,
                    events,
                    failure,
                )
            })
        })
        .collect();
    let mut report = Report::default();
    for task in tasks {
        match task.await {
            Ok((done, retries, kinds, events, failure)) => {
                report.operations += done;
                report.alert_events += events;
                report.retries += retries;
                for (kind, n) in kinds {
                    *report.kinds.entry(kind).or_insert(0) += n;
                }
                report.violations.extend(failure);
            }
            Err(error) => report
                .violations
                .push(format!("an account task panicked: {error}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = crasher.await;
    progress.abort();
    report.crashes = crashes.load(Ordering::Relaxed);
    report
}

impl Report {
    /// One line for logs and docs/BENCHMARKS.md.
    pub fn summary(&self, plan: &Plan, seconds: f64) -> String {
        let mut kinds = String::new();
        for (kind, n) in &self.kinds {
            let _ = write!(kinds, "{kind} {n}, ");
        }
        #[allow(clippy::cast_precision_loss, clippy::float_arithmetic)]
        let rate = self.operations as f64 / seconds.max(0.001);
        format!(
            "seed {}: {} operations ({}) in {seconds:.1} s = {rate:.0} ops/s; {} alert events; {} kills, {} calls sent again; {} violations",
            plan.seed,
            self.operations,
            kinds.trim_end_matches(", "),
            self.alert_events,
            self.crashes,
            self.retries,
            self.violations.len()
        )
    }
}
