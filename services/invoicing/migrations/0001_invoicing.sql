-- Invoicing: customers, prices, subscriptions, invoices, the outbox.
-- One script for SQLite and PostgreSQL. Times are microseconds since the
-- epoch (BIGINT); amounts are BIGINT counts of the asset's smallest unit.

CREATE TABLE customers (
    account      TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    external_id  TEXT,
    name         TEXT   NOT NULL,
    email        TEXT   NOT NULL,
    metadata     TEXT   NOT NULL,
    created_us   BIGINT NOT NULL,
    updated_us   BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE UNIQUE INDEX customers_external_id ON customers (account, external_id);

CREATE TABLE prices (
    account      TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    asset        TEXT   NOT NULL,
    asset_scale  BIGINT NOT NULL,
    meter        TEXT   NOT NULL,
    pricing      TEXT   NOT NULL,
    nickname     TEXT   NOT NULL,
    status       TEXT   NOT NULL CHECK (status IN ('active', 'inactive')),
    created_us   BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);

CREATE TABLE subscriptions (
    account               TEXT   NOT NULL,
    id                    TEXT   NOT NULL,
    customer              TEXT   NOT NULL,
    status                TEXT   NOT NULL CHECK (status IN ('active', 'canceled')),
    currency              TEXT,
    billing_interval      TEXT   NOT NULL,
    anchor_us             BIGINT NOT NULL,
    start_us              BIGINT NOT NULL,
    period_start_us       BIGINT NOT NULL,
    period_end_us         BIGINT NOT NULL,
    cancel_at_period_end  BIGINT NOT NULL,
    ended_us              BIGINT,
    latest_invoice        TEXT,
    items                 TEXT   NOT NULL,
    created_us            BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX subscriptions_customer ON subscriptions (account, customer, id);
-- The period-close job: active subscriptions whose period has ended.
CREATE INDEX subscriptions_due ON subscriptions (status, period_end_us);

CREATE TABLE invoices (
    account              TEXT   NOT NULL,
    id                   TEXT   NOT NULL,
    customer             TEXT   NOT NULL,
    subscription         TEXT   NOT NULL,
    status               TEXT   NOT NULL CHECK (status IN ('draft', 'finalizing', 'open', 'paid', 'voiding', 'void')),
    billing_reason       TEXT   NOT NULL,
    period_start_us      BIGINT NOT NULL,
    period_end_us        BIGINT NOT NULL,
    auto_finalize_at_us  BIGINT,
    finalized_us         BIGINT,
    paid_us              BIGINT,
    voided_us            BIGINT,
    created_us           BIGINT NOT NULL,
    updated_us           BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
-- One invoice per subscription period, whoever closes it first.
CREATE UNIQUE INDEX invoices_period ON invoices (account, subscription, period_start_us);
CREATE INDEX invoices_customer ON invoices (account, customer, id);
-- The auto-finalize and recovery workers.
CREATE INDEX invoices_status ON invoices (status, auto_finalize_at_us);

CREATE TABLE invoice_lines (
    account              TEXT   NOT NULL,
    invoice              TEXT   NOT NULL,
    position             BIGINT NOT NULL,
    id                   TEXT   NOT NULL,
    price                TEXT   NOT NULL,
    meter                TEXT   NOT NULL,
    description          TEXT   NOT NULL,
    asset                TEXT   NOT NULL,
    asset_scale          BIGINT NOT NULL,
    usage                TEXT   NOT NULL,
    quantity             TEXT   NOT NULL,
    unit_amount_decimal  TEXT,
    amount               BIGINT NOT NULL CHECK (amount >= 0),
    credits_applied      BIGINT NOT NULL CHECK (credits_applied >= 0 AND credits_applied <= amount),
    PRIMARY KEY (account, invoice, position)
);

CREATE TABLE invoice_credit_applications (
    account                     TEXT   NOT NULL,
    invoice                     TEXT   NOT NULL,
    position                    BIGINT NOT NULL,
    line                        TEXT   NOT NULL,
    credit_grant                TEXT   NOT NULL,
    amount                      BIGINT NOT NULL CHECK (amount > 0),
    credit_balance_transaction  TEXT   NOT NULL,
    PRIMARY KEY (account, invoice, position)
);

-- Domain events, written in the same transaction as the change they
-- announce (transactional outbox); a relay can publish them in order.
CREATE TABLE outbox (
    id          TEXT   NOT NULL PRIMARY KEY,
    account     TEXT   NOT NULL,
    event_type  TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    payload     TEXT   NOT NULL,
    created_us  BIGINT NOT NULL
);

-- request_id idempotency keys (libs/db/src/idempotency.rs).
CREATE TABLE idempotency_keys (
    account     TEXT   NOT NULL,
    request_id  TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    response    TEXT   NOT NULL,
    created_us  BIGINT NOT NULL,
    PRIMARY KEY (account, request_id)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_us);
