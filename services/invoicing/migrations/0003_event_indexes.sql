-- ListInvoiceEvents: an account's events newest first, optionally of one
-- invoice, without scanning other accounts' rows.
CREATE INDEX outbox_account ON outbox (account, id);
CREATE INDEX outbox_subject ON outbox (account, subject, id);
