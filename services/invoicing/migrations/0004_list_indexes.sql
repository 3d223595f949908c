-- An index for every filter the lists offer, ordered by id for keyset pages,
-- so a list costs what its page touches, not the account's whole table.
-- ListInvoices by status (customer: invoices_customer; subscription: the
-- invoices_period unique index), ListInvoiceEvents by type (invoice:
-- outbox_subject).
CREATE INDEX invoices_by_status ON invoices (account, status, id);
CREATE INDEX outbox_by_type ON outbox (account, event_type, id);
