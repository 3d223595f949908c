-- meter-ingest schema (postgres). The two backends differ only in the type
-- of decimal usage values: PostgreSQL NUMERIC (exact arithmetic in SQL, so
-- concurrent batches add to buckets without read-modify-write); SQLite TEXT
-- holding rust_decimal strings (SQLite has one writer, so the service adds
-- them up exactly in Rust). On PostgreSQL, key text columns use the "C"
-- collation: byte order, as in Rust and SQLite (LAST breaks ties by
-- identifier), and memcmp-fast index maintenance whatever the server locale.

CREATE TABLE meters (
    account      TEXT COLLATE "C" NOT NULL,
    id           TEXT   NOT NULL,
    event_name   TEXT   NOT NULL,
    display_name TEXT   NOT NULL,
    aggregation  TEXT   NOT NULL CHECK (aggregation IN ('count', 'sum', 'max', 'last')),
    customer_key TEXT   NOT NULL,
    value_key    TEXT   NOT NULL,
    status       TEXT   NOT NULL CHECK (status IN ('active', 'inactive')),
    created_us   BIGINT NOT NULL,
    updated_us   BIGINT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE UNIQUE INDEX meters_active_event_name ON meters (account, event_name) WHERE status = 'active';

-- Raw events, kept for audit and for the edges of usage windows. The
-- primary key is the permanent dedupe on identifier.
CREATE TABLE meter_events (
    account      TEXT COLLATE "C" NOT NULL,
    identifier   TEXT COLLATE "C" NOT NULL,
    meter_id     TEXT COLLATE "C" NOT NULL,
    customer     TEXT COLLATE "C" NOT NULL,
    value        NUMERIC   NOT NULL,
    timestamp_us BIGINT NOT NULL,
    payload      TEXT   NOT NULL,
    created_us   BIGINT NOT NULL,
    cancelled_us BIGINT,
    PRIMARY KEY (account, identifier)
);
CREATE INDEX meter_events_series ON meter_events (account, meter_id, customer, timestamp_us);

-- Hourly aggregates per (meter, customer), maintained in the same
-- transaction as the events they count (cancellations included).
CREATE TABLE usage_buckets (
    account         TEXT COLLATE "C" NOT NULL,
    meter_id        TEXT COLLATE "C" NOT NULL,
    customer        TEXT COLLATE "C" NOT NULL,
    bucket_us       BIGINT NOT NULL,
    event_count     BIGINT NOT NULL CHECK (event_count >= 0),
    value_sum       NUMERIC   NOT NULL,
    value_max       NUMERIC   NOT NULL,
    last_ts_us      BIGINT NOT NULL,
    last_identifier TEXT COLLATE "C" NOT NULL,
    last_value      NUMERIC   NOT NULL,
    -- Covering key: a series' buckets sit together in the index, so a
    -- 30-day query is an index-only scan of a few pages instead of one
    -- scattered heap page per bucket (measured: 20 vs 526 buffers at 5M rows).
    PRIMARY KEY (account, meter_id, customer, bucket_us)
        INCLUDE (event_count, value_sum, value_max, last_ts_us, last_identifier, last_value)
);
-- Index-only scans need a fresh visibility map; vacuum this insert-heavy
-- table after every 1% of growth or change instead of the default 20%.
ALTER TABLE usage_buckets SET (
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);

CREATE TABLE idempotency_keys (
    account     TEXT   NOT NULL,
    request_id  TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    response    TEXT   NOT NULL,
    created_us  BIGINT NOT NULL,
    PRIMARY KEY (account, request_id)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_us);
