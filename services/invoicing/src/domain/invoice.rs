//! Invoices, their lines and totals.

use std::collections::BTreeMap;

use billing_money::{Asset, Conversion, Currency, Decimal};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Invoice lifecycle (DESIGN.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Lines follow usage until finalized.
    Draft,
    /// Lines frozen; ApplyCredits may or may not have happened yet.
    Finalizing,
    /// Finalized with an amount due.
    Open,
    /// Nothing left to pay.
    Paid,
    /// ReverseCredits may or may not have happened yet.
    Voiding,
    /// Voided; credits given back.
    Void,
}

impl Status {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Finalizing => "finalizing",
            Self::Open => "open",
            Self::Paid => "paid",
            Self::Voiding => "voiding",
            Self::Void => "void",
        }
    }

    /// From the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "draft" => Self::Draft,
            "finalizing" => Self::Finalizing,
            "open" => Self::Open,
            "paid" => Self::Paid,
            "voiding" => Self::Voiding,
            "void" => Self::Void,
            _ => return None,
        })
    }
}

/// Why an invoice exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BillingReason {
    /// A period ended.
    SubscriptionCycle,
    /// Canceled mid-period.
    SubscriptionCancel,
    /// Credits were bought: credits never pay it.
    CreditPurchase,
}

impl BillingReason {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionCycle => "subscription_cycle",
            Self::SubscriptionCancel => "subscription_cancel",
            Self::CreditPurchase => "credit_purchase",
        }
    }

    /// From the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "subscription_cycle" => Some(Self::SubscriptionCycle),
            "subscription_cancel" => Some(Self::SubscriptionCancel),
            "credit_purchase" => Some(Self::CreditPurchase),
            _ => None,
        }
    }
}

/// Credits of one grant on one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditApplication {
    /// `credgr_…`
    pub credit_grant: String,
    /// Smallest units of the line's asset.
    pub amount: i64,
    /// The ledger's debit (`cbtxn_…`); empty in a preview.
    pub credit_balance_transaction: String,
}

/// One invoice line: one subscription item's usage over the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// `il_…`
    pub id: String,
    /// `price_…`
    pub price: String,
    /// `mtr_…`
    pub meter: String,
    /// The price's nickname.
    pub description: String,
    /// The price's asset.
    pub asset: Asset,
    /// The meter's aggregate over the period.
    pub usage: Decimal,
    /// Usage after transform_quantity.
    pub quantity: Decimal,
    /// Per-unit amount (per-unit prices only).
    pub unit_amount: Option<Decimal>,
    /// Rounded once, smallest units.
    pub amount: i64,
    /// Credits applied, smallest units.
    pub credits_applied: i64,
    /// Which grants paid, in application order.
    pub applications: Vec<CreditApplication>,
    /// A line in a converting pricing unit, from finalization on.
    #[serde(default)]
    pub conversion: Option<LineConversion>,
}

/// The rate frozen on a line in a converting pricing unit, and what its
/// uncovered units are due in money once the credits are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineConversion {
    /// The unit's rate at finalize.
    pub rate: Conversion,
    /// Smallest units of the currency due; None until credits applied.
    pub amount_due: Option<i64>,
}

impl Line {
    /// What credits left unpaid, in the line's asset. Both amounts are
    /// non-negative and credits never exceed the amount, so this cannot
    /// overflow; it is still checked, because money never wraps.
    pub fn uncovered(&self) -> Result<i64, TotalOverflow> {
        self.amount
            .checked_sub(self.credits_applied)
            .ok_or(TotalOverflow("amount due of a line"))
    }

    /// The uncovered units converted into money (zero until converted).
    pub fn converted(&self) -> Result<i64, TotalOverflow> {
        match self.conversion {
            Some(LineConversion {
                amount_due: Some(_),
                ..
            }) => self.uncovered(),
            _ => Ok(0),
        }
    }

    /// What is left to pay in the line's asset: zero once converted.
    pub fn amount_due(&self) -> Result<i64, TotalOverflow> {
        self.uncovered()?
            .checked_sub(self.converted()?)
            .ok_or(TotalOverflow("amount due of a line"))
    }

    /// Converts what credits left unpaid at the frozen rate (once the
    /// credits are recorded); a line without a rate is left as it is.
    pub fn convert(&mut self) -> Result<(), TotalOverflow> {
        let uncovered = self.uncovered()?;
        let scale = self.asset.scale();
        if let Some(conversion) = &mut self.conversion {
            conversion.amount_due = Some(
                conversion
                    .rate
                    .convert(uncovered, scale)
                    .map_err(|_| TotalOverflow("converted amount of a line"))?,
            );
        }
        Ok(())
    }

    /// The money due from the conversion, in its currency.
    pub fn converted_due(&self) -> Option<(Currency, i64)> {
        let conversion = self.conversion?;
        Some((conversion.rate.currency, conversion.amount_due?))
    }
}

/// A sum of an invoice's money does not fit in i64: the invoice cannot be
/// shown or finalized, never totalled with a saturated or wrapped number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} overflows i64")]
pub struct TotalOverflow(pub &'static str);

fn add(a: i64, b: i64, what: &'static str) -> Result<i64, TotalOverflow> {
    a.checked_add(b).ok_or(TotalOverflow(what))
}

/// Totals of one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    /// The asset.
    pub asset: Asset,
    /// Sum of its lines.
    pub subtotal: i64,
    /// Credits applied to them.
    pub credits_applied: i64,
    /// A pricing unit's units converted into money.
    pub converted: i64,
    /// A currency's money from lines converted into it.
    pub from_conversions: i64,
    /// subtotal − credits_applied − converted + from_conversions.
    pub amount_due: i64,
}

/// An invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// `in_…`
    pub id: String,
    /// `cus_…`
    pub customer: String,
    /// `sub_…`
    pub subscription: String,
    /// Lifecycle.
    pub status: Status,
    /// Why it exists.
    pub reason: BillingReason,
    /// Service period start.
    pub period_start: DateTime<Utc>,
    /// Service period end (exclusive).
    pub period_end: DateTime<Utc>,
    /// Lines in subscription item order.
    pub lines: Vec<Line>,
    /// When the draft finalizes by itself.
    pub auto_finalize_at: Option<DateTime<Utc>>,
    /// Finalization time.
    pub finalized_at: Option<DateTime<Utc>>,
    /// Payment time.
    pub paid_at: Option<DateTime<Utc>>,
    /// Void time.
    pub voided_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// The last failed attempt at the pending step (`finalizing`, `voiding`).
    #[serde(default)]
    pub step_error: Option<StepError>,
}

/// A failed attempt at completing `finalizing` or `voiding`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// The upstream gRPC code name (`UNAVAILABLE`, …).
    pub code: String,
    /// The upstream message.
    pub message: String,
    /// When the attempt failed.
    pub failed_at: DateTime<Utc>,
    /// Failed attempts since the step began.
    pub attempts: i64,
    /// When the recovery worker tries again; `None` when it does not (the
    /// peer refused the request itself, so the invoice went back to `draft`
    /// or `open` and waits for FinalizeInvoice or VoidInvoice).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A draft was created (a period closed).
pub const INVOICE_CREATED: &str = "invoice.created";
/// The ledger refused to apply credits (not a transient failure): nothing
/// was applied and the invoice is a draft again.
pub const INVOICE_FINALIZATION_FAILED: &str = "invoice.finalization_failed";
/// The ledger refused to give credits back (not a transient failure): the
/// invoice is open again.
pub const INVOICE_VOID_FAILED: &str = "invoice.void_failed";
/// Credits were applied; the invoice is open or paid.
pub const INVOICE_FINALIZED: &str = "invoice.finalized";
/// An open invoice was marked paid.
pub const INVOICE_PAID: &str = "invoice.paid";
/// An open invoice was voided and its credits given back.
pub const INVOICE_VOIDED: &str = "invoice.voided";
/// Types of invoice events, in lifecycle order.
pub const EVENT_TYPES: [&str; 6] = [
    INVOICE_CREATED,
    INVOICE_FINALIZATION_FAILED,
    INVOICE_FINALIZED,
    INVOICE_PAID,
    INVOICE_VOID_FAILED,
    INVOICE_VOIDED,
];

/// Something that happened to an invoice (an outbox row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceEvent {
    /// `evt_…`
    pub id: String,
    /// One of [`EVENT_TYPES`].
    pub event_type: String,
    /// `in_…`
    pub invoice: String,
    /// When it happened.
    pub created: DateTime<Utc>,
}

/// First retry delay of a failed step; it doubles per attempt.
pub const RETRY_FIRST: TimeDelta = TimeDelta::seconds(10);
/// Longest retry delay: an upstream back from an outage is noticed within it.
pub const RETRY_MAX: TimeDelta = TimeDelta::minutes(15);

/// How long the recovery worker waits after the `attempts`-th failure.
pub fn retry_delay(attempts: i64) -> TimeDelta {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    RETRY_FIRST
        .checked_mul(1_i32 << doublings)
        .map_or(RETRY_MAX, |delay| delay.min(RETRY_MAX))
}

impl Invoice {
    /// One total per asset, ordered by asset key; a sum past i64 is an error.
    pub fn totals(&self) -> Result<Vec<Total>, TotalOverflow> {
        let mut by_asset: BTreeMap<String, Total> = BTreeMap::new();
        let entry = |by_asset: &mut BTreeMap<String, Total>, asset: &Asset| {
            by_asset
                .entry(asset.key())
                .or_insert_with(|| Total {
                    asset: asset.clone(),
                    subtotal: 0,
                    credits_applied: 0,
                    converted: 0,
                    from_conversions: 0,
                    amount_due: 0,
                })
                .clone()
        };
        for line in &self.lines {
            let mut total = entry(&mut by_asset, &line.asset);
            total.subtotal = add(total.subtotal, line.amount, "subtotal")?;
            total.credits_applied = add(
                total.credits_applied,
                line.credits_applied,
                "credits applied",
            )?;
            total.converted = add(total.converted, line.converted()?, "converted")?;
            total.amount_due = add(total.amount_due, line.amount_due()?, "amount due")?;
            by_asset.insert(line.asset.key(), total);
            if let Some((currency, due)) = line.converted_due() {
                let asset = Asset::Currency(currency);
                let mut total = entry(&mut by_asset, &asset);
                total.from_conversions = add(total.from_conversions, due, "from conversions")?;
                total.amount_due = add(total.amount_due, due, "amount due")?;
                by_asset.insert(asset.key(), total);
            }
        }
        Ok(by_asset.into_values().collect())
    }

    /// The lines credits can pay: those with a positive amount. ApplyCredits
    /// is called only when there is at least one.
    pub fn chargeable_lines(&self) -> impl Iterator<Item = &Line> {
        let credits_pay = self.reason != BillingReason::CreditPurchase;
        self.lines
            .iter()
            .filter(move |l| credits_pay && l.amount > 0)
    }

    /// Status after credits: paid when nothing is due in any asset.
    pub fn finalized_status(&self) -> Result<Status, TotalOverflow> {
        for line in &self.lines {
            if line.amount_due()? != 0 || line.converted_due().is_some_and(|(_, due)| due != 0) {
                return Ok(Status::Open);
            }
        }
        Ok(Status::Paid)
    }

    /// Converts each converting line's uncovered units (credits recorded).
    pub fn convert(&mut self) -> Result<(), TotalOverflow> {
        self.lines.iter_mut().try_for_each(Line::convert)
    }

    /// The pricing units of the lines, each once.
    pub fn pricing_units(&self) -> Vec<&str> {
        let mut units: Vec<&str> = self
            .lines
            .iter()
            .filter_map(|l| match &l.asset {
                Asset::PricingUnit { id, .. } => Some(id.as_str()),
                Asset::Currency(_) => None,
            })
            .collect();
        units.sort_unstable();
        units.dedup();
        units
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn totals_past_i64_are_an_error_not_a_saturated_number() {
        let usd = Asset::Currency(billing_money::Currency::parse("usd").unwrap());
        let line = |id: &str| Line {
            id: id.into(),
            price: "price_1".into(),
            meter: "mtr_1".into(),
            description: String::new(),
            asset: usd.clone(),
            usage: Decimal::ZERO,
            quantity: Decimal::ZERO,
            unit_amount: None,
            amount: i64::MAX,
            credits_applied: 0,
            applications: Vec::new(),
            conversion: None,
        };
        let mut invoice = Invoice {
            id: "in_1".into(),
            customer: "cus_1".into(),
            subscription: "sub_1".into(),
            status: Status::Draft,
            reason: BillingReason::SubscriptionCycle,
            period_start: DateTime::UNIX_EPOCH,
            period_end: DateTime::UNIX_EPOCH,
            lines: vec![line("il_1")],
            auto_finalize_at: None,
            finalized_at: None,
            paid_at: None,
            voided_at: None,
            created: DateTime::UNIX_EPOCH,
            step_error: None,
        };
        assert_eq!(invoice.totals().unwrap()[0].subtotal, i64::MAX);
        invoice.lines.push(line("il_2"));
        assert_eq!(invoice.totals(), Err(TotalOverflow("subtotal")));
    }

    #[test]
    fn retry_delay_doubles_from_ten_seconds_to_fifteen_minutes() {
        let seconds = |attempts| retry_delay(attempts).num_seconds();
        assert_eq!([0, 1, 2, 3, 6, 7].map(seconds), [10, 10, 20, 40, 320, 640]);
        assert_eq!(retry_delay(8), TimeDelta::minutes(15));
        assert_eq!(retry_delay(i64::MAX), TimeDelta::minutes(15));
    }
}
