-- Which process works on an invoice's saga, until when (issue 19): the
-- worker of every replica resumes `finalizing`/`voiding` invoices, and a
-- live FinalizeInvoice or VoidInvoice runs the same steps; the claim keeps
-- two of them off one invoice at once. An expired claim is anyone's; a
-- process takes over the claims of its own instance name (a restart).
ALTER TABLE invoices ADD COLUMN claimed_by TEXT;
ALTER TABLE invoices ADD COLUMN claimed_until_us BIGINT;
-- A process starting gives back what a predecessor of its name held.
CREATE INDEX invoices_claimed ON invoices (claimed_by) WHERE claimed_by IS NOT NULL;
