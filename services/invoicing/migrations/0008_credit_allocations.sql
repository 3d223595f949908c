-- Recurring credit allocations (DESIGN.md section 11).
ALTER TABLE subscriptions ADD COLUMN credit_allocations TEXT NOT NULL DEFAULT '[]';

-- One row per subscription, allocation and period: the durable intent to
-- grant that period's credits (inserted in the transaction that starts the
-- period), and what became of it. The ledger calls it leads to are keyed by
-- (subscription, allocation, period start), so a crash, a retry or a second
-- replica repeats a call and never doubles a grant.
CREATE TABLE allocation_periods (
    account          TEXT   NOT NULL,
    subscription     TEXT   NOT NULL,
    allocation       BIGINT NOT NULL,
    period_start_us  BIGINT NOT NULL,
    period_end_us    BIGINT NOT NULL,
    -- 1 for the subscription's first period (proration).
    first_period     BIGINT NOT NULL,
    -- The period's grant (credgr_…), once the ledger made it.
    credit_grant     TEXT,
    -- The grant the previous period's remainder was carried into, if any.
    carried_grant    TEXT,
    -- 1 once the previous period's rollover into this one is settled.
    carried_in       BIGINT NOT NULL,
    -- The period's invoice, set when the period closes.
    invoice          TEXT,
    -- 1 once the period is closed (invoice set, or ended without one).
    closed           BIGINT NOT NULL DEFAULT 0,
    -- When the subscription was canceled within or at the end of this period.
    canceled_us      BIGINT,
    -- 1 once nothing more will happen to this row.
    done             BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, subscription, allocation, period_start_us)
);
-- The worker's queue: rows with something left to do.
CREATE INDEX allocation_periods_open ON allocation_periods (done, account, subscription);
