//! Invoice claims (ops/claims.rs; migration 0014).

use super::Store;
use crate::error::InvoicingError;

impl Store {
    /// Claims invoice `id` for `instance` until `until_us` if it is free,
    /// expired at `now_us`, or already `instance`'s (a run of this process
    /// holds it only once: ops/claims.rs); whether it did.
    pub async fn claim_invoice(
        &self,
        account: &str,
        id: &str,
        instance: &str,
        now_us: i64,
        until_us: i64,
    ) -> Result<bool, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE invoices SET claimed_by = $3, claimed_until_us = $5 \
             WHERE account = $1 AND id = $2 \
             AND (claimed_until_us IS NULL OR claimed_until_us <= $4 OR claimed_by = $3)",
        )
        .bind(account)
        .bind(id)
        .bind(instance)
        .bind(now_us)
        .bind(until_us)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(claimed == 1)
    }

    /// Gives `instance`'s claim on invoice `id` back.
    pub async fn release_invoice(
        &self,
        account: &str,
        id: &str,
        instance: &str,
    ) -> Result<(), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE invoices SET claimed_by = NULL, claimed_until_us = NULL \
             WHERE account = $1 AND id = $2 AND claimed_by = $3",
        )
        .bind(account)
        .bind(id)
        .bind(instance)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives back every claim held under `instance`: a process starting
    /// under that name runs nothing yet, so they are a dead predecessor's.
    pub async fn release_instance_claims(&self, instance: &str) -> Result<u64, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let released = sqlx::query(
            "UPDATE invoices SET claimed_by = NULL, claimed_until_us = NULL WHERE claimed_by = $1",
        )
        .bind(instance)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }
}
