-- Auto top-ups (DESIGN.md section 11): one per customer and asset; setting
-- again replaces the settings and keeps the id (the limits' window counts
-- the purchases of the id). `settings` is domain::top_up::AutoTopUp as JSON.
CREATE TABLE auto_top_ups (
    account        TEXT   NOT NULL,
    id             TEXT   NOT NULL,
    customer       TEXT   NOT NULL,
    asset          TEXT   NOT NULL,
    settings       TEXT   NOT NULL,
    enabled        BIGINT NOT NULL,
    created_us     BIGINT NOT NULL,
    updated_us     BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE UNIQUE INDEX auto_top_ups_by_customer ON auto_top_ups (account, customer, asset);
-- The accounts whose ledger feed the worker follows.
CREATE INDEX auto_top_ups_enabled ON auto_top_ups (enabled, account);

-- The purchases an auto top-up made, and what they cost (its limits).
ALTER TABLE credit_purchases ADD COLUMN auto_top_up TEXT;
ALTER TABLE credit_purchases ADD COLUMN amount BIGINT NOT NULL DEFAULT 0;
-- Partial: only top-up purchases, so the planner never mistakes it for an
-- index on the account alone (on small tables its costs tie with the others).
CREATE INDEX credit_purchases_by_top_up ON credit_purchases (account, auto_top_up, created_us)
    WHERE auto_top_up IS NOT NULL;

-- Durable positions in other services' event feeds, per account: the
-- worker resumes from here after a crash (an event handled twice is made
-- harmless by the request id it carries).
CREATE TABLE feed_cursors (
    account   TEXT NOT NULL,
    feed      TEXT NOT NULL,
    position  TEXT NOT NULL,
    PRIMARY KEY (account, feed)
);
