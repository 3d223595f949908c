//! Export and the credit liability report (DESIGN.md §13): reads of the
//! whole history, a page at a time.

use chrono::{DateTime, Utc};

use super::Ledger;
use crate::domain::grant::Category;
use crate::domain::report::LiabilityRow;
use crate::domain::transaction::BalanceTransaction;
use crate::error::LedgerError;
use crate::store::{ExportCursor, ExportRange};

impl Ledger {
    /// One page (at most [`crate::store::EXPORT_PAGE`]) of the account's
    /// transactions in `range`, after `after`, oldest first.
    pub async fn export_page(
        &self,
        account: &str,
        range: &ExportRange,
        after: Option<&ExportCursor>,
    ) -> Result<Vec<(BalanceTransaction, Category)>, LedgerError> {
        self.store.export_page(account, range, after).await
    }

    /// The liability report over `[from, to)`.
    pub async fn liability_report(
        &self,
        account: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<LiabilityRow>, LedgerError> {
        use billing_server::time::to_micros;
        self.store
            .liability_report(account, to_micros(from), to_micros(to))
            .await
    }
}
