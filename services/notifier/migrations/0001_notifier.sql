-- The notifier: webhook endpoints, the events received from the services'
-- feeds (with how far each feed was read), and the deliveries. One script
-- for SQLite and PostgreSQL; times are microseconds since the epoch.

CREATE TABLE webhook_endpoints (
    account               TEXT   NOT NULL,
    id                    TEXT   NOT NULL,
    url                   TEXT   NOT NULL,
    enabled_events        TEXT   NOT NULL,
    description           TEXT   NOT NULL,
    metadata              TEXT   NOT NULL,
    -- Kept in clear: signing needs it. The old one signs beside it until
    -- old_secret_expires_us (a rotation).
    secret                TEXT   NOT NULL,
    old_secret            TEXT,
    old_secret_expires_us BIGINT,
    disabled_reason       TEXT,
    failing_since_us      BIGINT,
    created_us            BIGINT NOT NULL,
    updated_us            BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);

-- How far each account's feed of each service was read: the cursor moves
-- in the transaction that stores what was read, so a crash re-reads at
-- most what was not stored.
CREATE TABLE feed_cursors (
    account    TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    cursor     TEXT   NOT NULL,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (account, source)
);

-- Every event received, as the body webhooks carry (proto3 JSON).
-- published_us: when the JetStream sink published it (NULL: not yet).
CREATE TABLE inbox (
    account      TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    source       TEXT   NOT NULL,
    event_type   TEXT   NOT NULL,
    body         TEXT   NOT NULL,
    created_us   BIGINT NOT NULL,
    received_us  BIGINT NOT NULL,
    published_us BIGINT,
    PRIMARY KEY (account, id)
);
CREATE INDEX inbox_unpublished ON inbox (received_us) WHERE published_us IS NULL;
CREATE INDEX inbox_by_age ON inbox (received_us);

-- One row per event and endpoint: the unique key makes a re-read feed or
-- a second replica create nothing twice.
CREATE TABLE webhook_deliveries (
    account          TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    endpoint         TEXT   NOT NULL,
    event            TEXT   NOT NULL,
    event_type       TEXT   NOT NULL,
    status           TEXT   NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL,
    last_http_status BIGINT NOT NULL,
    last_error       TEXT   NOT NULL,
    next_attempt_us  BIGINT,
    created_us       BIGINT NOT NULL,
    updated_us       BIGINT NOT NULL,
    delivered_us     BIGINT,
    PRIMARY KEY (account, id),
    UNIQUE (account, endpoint, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (account, endpoint, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (account, event, id);
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (account, status, id);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (created_us);
-- An endpoint's deliveries of one status. Created last: PostgreSQL breaks
-- cost ties between indexes in favour of the newest, and on small tables
-- this index and webhook_deliveries_by_status cost the same.
CREATE INDEX webhook_deliveries_by_endpoint_status ON webhook_deliveries (account, endpoint, status, id);

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
