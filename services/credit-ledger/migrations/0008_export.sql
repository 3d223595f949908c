-- ExportLedgerEntries and the liability report read the history by
-- effective time, a page at a time (DESIGN.md §13).
CREATE INDEX credit_balance_transactions_by_effective
    ON credit_balance_transactions (account, effective_at_us, id);
-- One customer's export.
CREATE INDEX credit_balance_transactions_by_customer_effective
    ON credit_balance_transactions (account, customer, effective_at_us, id);
