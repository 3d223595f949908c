//! Balance transactions: the append-only history of every grant.

use billing_money::Asset;
use chrono::{DateTime, Utc};

/// Makes the id of each new balance transaction. The caller passes its
/// generator: domain code makes no ids.
pub type NewId<'a> = &'a mut (dyn FnMut() -> String + Send);

/// Credit or debit, with why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// The variants are Stripe's transaction types (credits_granted, credits_applied, …).
#[allow(clippy::enum_variant_names)]
pub enum TransactionKind {
    /// Credit: the grant was created.
    CreditsGranted,
    /// Credit: an invoice the credits paid was voided.
    CreditsApplicationInvoiceVoided,
    /// Debit: applied to an invoice line.
    CreditsApplied,
    /// Debit: expired.
    CreditsExpired,
    /// Debit: voided.
    CreditsVoided,
}

impl TransactionKind {
    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreditsGranted => "credits_granted",
            Self::CreditsApplicationInvoiceVoided => "credits_application_invoice_voided",
            Self::CreditsApplied => "credits_applied",
            Self::CreditsExpired => "credits_expired",
            Self::CreditsVoided => "credits_voided",
        }
    }

    /// From the storage form.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::CreditsGranted,
            Self::CreditsApplicationInvoiceVoided,
            Self::CreditsApplied,
            Self::CreditsExpired,
            Self::CreditsVoided,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }

    /// Whether it adds to the grant's balance.
    pub fn is_credit(self) -> bool {
        matches!(
            self,
            Self::CreditsGranted | Self::CreditsApplicationInvoiceVoided
        )
    }
}

/// One immutable history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceTransaction {
    /// `cbtxn_…`
    pub id: String,
    /// The customer.
    pub customer: String,
    /// The grant.
    pub credit_grant: String,
    /// Why.
    pub kind: TransactionKind,
    /// The grant's asset.
    pub asset: Asset,
    /// Positive amount.
    pub amount: i64,
    /// For applications and their reversal.
    pub invoice: Option<String>,
    /// For applications and their reversal.
    pub invoice_line_item: Option<String>,
    /// When it takes effect.
    pub effective_at: DateTime<Utc>,
    /// When it was recorded.
    pub created: DateTime<Utc>,
    /// The grant's cost basis (shown with the transaction; not stored on it).
    pub cost_basis: Option<super::grant::CostBasis>,
}
