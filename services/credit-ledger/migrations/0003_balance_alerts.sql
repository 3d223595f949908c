-- Balance alerts (DESIGN.md section 10).
--
-- One row per customer and asset whose balance was ever evaluated: the
-- available balance as of the last evaluation. Every change that moves a
-- balance locks this row, recomputes the balance and compares it with the
-- stored one, in the same transaction: each crossing of a threshold is seen
-- by exactly one transaction. `next_change_us` is the next time the balance
-- changes by time alone (a grant becoming effective or expiring); the
-- sweeper re-evaluates rows whose time has come.
CREATE TABLE customer_balances (
    account        TEXT   NOT NULL,
    customer       TEXT   NOT NULL,
    asset          TEXT   NOT NULL,
    asset_scale    BIGINT NOT NULL,
    available      BIGINT,
    evaluated_us   BIGINT,
    next_change_us BIGINT,
    PRIMARY KEY (account, customer, asset)
);
CREATE INDEX customer_balances_by_next_change ON customer_balances (next_change_us)
    WHERE next_change_us IS NOT NULL;

-- Configured alerts; `customer` is '' for every customer of the account.
CREATE TABLE balance_alerts (
    account     TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    customer    TEXT   NOT NULL,
    asset       TEXT   NOT NULL,
    asset_scale BIGINT NOT NULL,
    threshold   BIGINT NOT NULL CHECK (threshold > 0),
    title       TEXT   NOT NULL,
    created_us  BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX balance_alerts_by_asset ON balance_alerts (account, asset, customer);
CREATE INDEX balance_alerts_by_customer ON balance_alerts (account, customer, id);
