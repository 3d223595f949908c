-- Credit holds (DESIGN.md section 12): credits reserved for a use about to
-- happen. A hold counts while `released_us IS NULL AND expires_at_us > now`:
-- time alone ends it, so no sweeper is needed for correctness. Holds are
-- created, and released, under the customer's `customer_balances` row lock,
-- and their sum is part of the balance the alerts watch.
CREATE TABLE credit_holds (
    account       TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    customer      TEXT   NOT NULL,
    asset         TEXT   NOT NULL,
    asset_scale   BIGINT NOT NULL,
    amount        BIGINT NOT NULL CHECK (amount > 0),
    request_id    TEXT   NOT NULL,
    expires_at_us BIGINT NOT NULL,
    released_us   BIGINT,
    created_us    BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
-- The active holds of a balance: a range scan past `now` on expiry.
CREATE INDEX credit_holds_active ON credit_holds (account, customer, asset, expires_at_us)
    WHERE released_us IS NULL;
CREATE INDEX credit_holds_by_customer ON credit_holds (account, customer, id);
