-- Credit purchases (DESIGN.md section 11). The fixed terms are `terms`
-- (JSON, domain::purchase::CreditPurchase); the grant and the status move
-- as the purchase's saga does: processing → pending_payment → active, or → void.
CREATE TABLE credit_purchases (
    account       TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    customer      TEXT   NOT NULL,
    invoice       TEXT   NOT NULL,
    credit_grant  TEXT,
    status        TEXT   NOT NULL CHECK (status IN ('processing', 'pending_payment', 'active', 'void')),
    terms         TEXT   NOT NULL,
    created_us    BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX credit_purchases_by_customer ON credit_purchases (account, customer, id);
-- Invoice first: a purchase is looked up by its invoice id, and an index
-- led by the account would tie with the primary key on small tables
-- (PostgreSQL breaks cost ties in favour of the newest index).
CREATE UNIQUE INDEX credit_purchases_by_invoice ON credit_purchases (invoice, account);
-- The worker's queue: purchases whose saga may have a step left.
CREATE INDEX credit_purchases_open ON credit_purchases (status, account, id);

-- One invoice per subscription period still, but purchase invoices have no
-- subscription: several may start at the same microsecond.
DROP INDEX invoices_period;
CREATE UNIQUE INDEX invoices_period ON invoices (account, subscription, period_start_us)
    WHERE subscription <> '';
-- ListInvoices by subscription no longer leans on the (now partial) unique
-- index: a generic plan could not use it.
CREATE INDEX invoices_by_subscription ON invoices (account, subscription, id);
