-- The last failed attempt at completing `finalizing` or `voiding` (an
-- upstream error), shown on the invoice, and when the recovery worker may
-- try again (exponential backoff instead of a retry every tick). Cleared by
-- every status change.
ALTER TABLE invoices ADD COLUMN step_error_code TEXT;
ALTER TABLE invoices ADD COLUMN step_error_message TEXT;
ALTER TABLE invoices ADD COLUMN step_failed_us BIGINT;
ALTER TABLE invoices ADD COLUMN step_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN step_retry_at_us BIGINT;
-- The recovery worker's query: only invoices mid-saga, by retry time.
CREATE INDEX invoices_mid_saga ON invoices (step_retry_at_us)
    WHERE status IN ('finalizing', 'voiding');
