-- ListInvoices by subscription and by customer and status, newest first:
-- without these a page of one subscription's (or one customer's draft)
-- invoices walks the account's invoices by id and filters, a cost that grows
-- with the account (found by tests/plans.rs).
CREATE INDEX invoices_subscription ON invoices (account, subscription, id);
CREATE INDEX invoices_customer_status ON invoices (account, customer, status, id);
