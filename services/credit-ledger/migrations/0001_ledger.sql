-- Credit ledger schema. Portable between SQLite and PostgreSQL: TEXT and
-- BIGINT columns only, times in microseconds since the epoch (UTC), amounts
-- as integers in the asset's smallest unit.

CREATE TABLE pricing_units (
    account      TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    scale        BIGINT  NOT NULL CHECK (scale BETWEEN 0 AND 9),
    created_us   BIGINT  NOT NULL,
    PRIMARY KEY (account, id)
);

-- One row per grant, holding its running balance and per-kind totals so
-- balances never scan transactions. The CHECKs are the last line of defence:
-- the application logic never lets them fire.
CREATE TABLE credit_grants (
    account          TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    customer         TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    asset            TEXT   NOT NULL,
    asset_scale      BIGINT NOT NULL,
    amount           BIGINT NOT NULL CHECK (amount > 0),
    available        BIGINT NOT NULL CHECK (available >= 0),
    applied_total    BIGINT NOT NULL DEFAULT 0 CHECK (applied_total >= 0),
    reinstated_total BIGINT NOT NULL DEFAULT 0 CHECK (reinstated_total >= 0),
    expired_total    BIGINT NOT NULL DEFAULT 0 CHECK (expired_total >= 0),
    voided_total     BIGINT NOT NULL DEFAULT 0 CHECK (voided_total >= 0),
    scope            TEXT   NOT NULL,
    category         TEXT   NOT NULL CHECK (category IN ('paid', 'promotional')),
    priority         BIGINT NOT NULL CHECK (priority BETWEEN 0 AND 100),
    effective_at_us  BIGINT NOT NULL,
    expires_at_us    BIGINT,
    voided_at_us     BIGINT,
    metadata         TEXT   NOT NULL,
    created_us       BIGINT NOT NULL,
    updated_us       BIGINT NOT NULL,
    PRIMARY KEY (account, id),
    CHECK (amount = available + applied_total - reinstated_total + expired_total + voided_total)
);
CREATE INDEX credit_grants_by_customer ON credit_grants (account, customer, id);
CREATE INDEX credit_grants_by_expiry ON credit_grants (expires_at_us) WHERE available > 0;

-- Append-only: rows are never updated or deleted.
CREATE TABLE credit_balance_transactions (
    account           TEXT   NOT NULL,
    id                TEXT   NOT NULL,
    customer          TEXT   NOT NULL,
    credit_grant      TEXT   NOT NULL,
    direction         TEXT   NOT NULL CHECK (direction IN ('credit', 'debit')),
    kind              TEXT   NOT NULL CHECK (kind IN (
                          'credits_granted', 'credits_application_invoice_voided',
                          'credits_applied', 'credits_expired', 'credits_voided')),
    amount            BIGINT NOT NULL CHECK (amount > 0),
    invoice           TEXT,
    invoice_line_item TEXT,
    effective_at_us   BIGINT NOT NULL,
    created_us        BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX credit_balance_transactions_by_customer
    ON credit_balance_transactions (account, customer, id);
CREATE INDEX credit_balance_transactions_by_grant
    ON credit_balance_transactions (account, credit_grant, id);

-- One row per invoice credits were applied to: the idempotency record of
-- ApplyCredits (fingerprint + stored outcome) and of ReverseCredits.
CREATE TABLE invoice_credit_applications (
    account     TEXT   NOT NULL,
    invoice     TEXT   NOT NULL,
    customer    TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    reversal    TEXT,
    created_us  BIGINT NOT NULL,
    reversed_us BIGINT,
    PRIMARY KEY (account, invoice)
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
