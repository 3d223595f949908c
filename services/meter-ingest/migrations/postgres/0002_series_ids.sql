-- Integer series ids. A (account, meter, customer) series gets a BIGINT id
-- once; raw events and buckets carry that id instead of three text columns.
-- Measured on the ingest benchmark: text key comparisons and the width of
-- the series index and of the bucket key were the largest share of
-- PostgreSQL's CPU per event (see docs/BENCHMARKS.md). Ids are never reused
-- or changed (meters are deactivated, never deleted), so the service caches
-- them. No foreign key from events or buckets: the service writes an id
-- only after reading it back from meter_series, and a per-row key check
-- would cost one more index probe per event.

CREATE TABLE meter_series (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account  TEXT COLLATE "C" NOT NULL,
    meter_id TEXT COLLATE "C" NOT NULL,
    customer TEXT COLLATE "C" NOT NULL,
    CONSTRAINT meter_series_key UNIQUE (account, meter_id, customer)
);
INSERT INTO meter_series (account, meter_id, customer)
    SELECT DISTINCT account, meter_id, customer FROM meter_events ORDER BY 1, 2, 3;

-- Fixed-width columns first: no alignment padding inside the row.
CREATE TABLE meter_events_by_id (
    series_id    BIGINT NOT NULL,
    timestamp_us BIGINT NOT NULL,
    created_us   BIGINT NOT NULL,
    cancelled_us BIGINT,
    account      TEXT COLLATE "C" NOT NULL,
    identifier   TEXT COLLATE "C" NOT NULL,
    value        NUMERIC NOT NULL,
    payload      TEXT NOT NULL,
    -- The permanent dedupe on identifier.
    CONSTRAINT meter_events_identifier PRIMARY KEY (account, identifier)
);
INSERT INTO meter_events_by_id
    SELECT s.id, e.timestamp_us, e.created_us, e.cancelled_us, e.account, e.identifier, e.value, e.payload
    FROM meter_events e
    JOIN meter_series s ON s.account = e.account AND s.meter_id = e.meter_id AND s.customer = e.customer;
DROP TABLE meter_events;
ALTER TABLE meter_events_by_id RENAME TO meter_events;
-- The raw events of one series in time order: the edges of usage windows
-- and the rebuild of a bucket after a cancellation.
CREATE INDEX meter_events_series_time ON meter_events (series_id, timestamp_us);

CREATE TABLE usage_buckets_by_id (
    series_id       BIGINT NOT NULL,
    bucket_us       BIGINT NOT NULL,
    event_count     BIGINT NOT NULL CHECK (event_count >= 0),
    last_ts_us      BIGINT NOT NULL,
    value_sum       NUMERIC NOT NULL,
    value_max       NUMERIC NOT NULL,
    last_value      NUMERIC NOT NULL,
    last_identifier TEXT COLLATE "C" NOT NULL,
    -- Covering key: a 30-day query is an index-only scan of a few pages.
    CONSTRAINT usage_buckets_series_hour PRIMARY KEY (series_id, bucket_us)
        INCLUDE (event_count, last_ts_us, value_sum, value_max, last_value, last_identifier)
);
INSERT INTO usage_buckets_by_id
    SELECT s.id, b.bucket_us, b.event_count, b.last_ts_us, b.value_sum, b.value_max, b.last_value, b.last_identifier
    FROM usage_buckets b
    JOIN meter_series s ON s.account = b.account AND s.meter_id = b.meter_id AND s.customer = b.customer;
DROP TABLE usage_buckets;
ALTER TABLE usage_buckets_by_id RENAME TO usage_buckets;
ALTER TABLE usage_buckets SET (
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);
