//! Usage nobody will bill: a job that asks invoicing, off the ingest path,
//! whether each series' customer exists. A known customer's series is
//! never asked about again; an unknown one's is reported as
//! `meter.usage_unattributed` at most once per UTC day with usage (the
//! event is written with the day's mark, in one transaction). Usage is
//! never dropped: the customer may be created later, and from then on the
//! series is billed like any other.

use std::time::Duration;

use billing_server::customers::CustomerDirectory;
use billing_server::time::to_micros;

use crate::error::MeterError;
use crate::ops::Metering;
use crate::store::{DAY_US, UnattributedUsage};

/// Series looked at per query.
const BATCH: i64 = 500;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributionReport {
    /// Series whose customer invoicing knows (not asked again).
    pub attributed: usize,
    /// `meter.usage_unattributed` events written.
    pub reported: usize,
    /// Series skipped because invoicing could not answer.
    pub deferred: usize,
}

/// One pass over every series not known to be attributed.
pub async fn run_once(
    metering: &Metering,
    directory: &CustomerDirectory,
) -> Result<AttributionReport, MeterError> {
    let store = metering.store();
    let now_us = to_micros(metering.clock().now());
    let today = now_us.div_euclid(DAY_US);
    let mut report = AttributionReport::default();
    let mut after = 0;
    loop {
        let batch = store.unattributed(after, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(report);
        };
        after = last.id;
        for series in &batch {
            // Reported today already: nothing to ask until tomorrow.
            if series.reported_day.is_some_and(|day| day >= today) {
                continue;
            }
            match directory.knows(&series.account, &series.customer).await {
                Ok(true) => {
                    store.mark_attributed(series.id, now_us).await?;
                    report.attributed += 1;
                }
                Ok(false) => {
                    let Some(hour) = store.last_usage_hour(series.id).await? else {
                        continue;
                    };
                    // Only days with usage since the last report.
                    if series
                        .reported_day
                        .is_some_and(|day| hour.div_euclid(DAY_US) <= day)
                    {
                        continue;
                    }
                    let usage = UnattributedUsage {
                        meter: series.meter.clone(),
                        customer: series.customer.clone(),
                        day: today,
                        last_usage_hour_us: hour,
                    };
                    if store.report_unattributed(series, &usage, now_us).await? {
                        report.reported += 1;
                    }
                }
                Err(failed) => {
                    tracing::debug!(customer = %series.customer, error = %failed, "attribution deferred");
                    report.deferred += 1;
                }
            }
        }
    }
}

/// Runs a pass every `interval` until `stop` turns true.
pub async fn run(
    metering: Metering,
    directory: CustomerDirectory,
    interval: Duration,
    mut stop: billing_server::host::Stop,
) {
    loop {
        match run_once(&metering, &directory).await {
            Ok(report) if report.reported > 0 || report.deferred > 0 => {
                tracing::info!(
                    reported = report.reported,
                    deferred = report.deferred,
                    attributed = report.attributed,
                    "attribution pass"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "attribution pass failed; retrying next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {
                if *stop.borrow() {
                    return;
                }
            }
        }
    }
}
