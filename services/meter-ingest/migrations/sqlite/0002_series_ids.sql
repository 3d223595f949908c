-- Integer series ids (see the PostgreSQL migration of the same name for why).

CREATE TABLE meter_series (
    id       INTEGER PRIMARY KEY,
    account  TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    UNIQUE (account, meter_id, customer)
);
INSERT INTO meter_series (account, meter_id, customer)
    SELECT DISTINCT account, meter_id, customer FROM meter_events ORDER BY 1, 2, 3;

CREATE TABLE meter_events_by_id (
    series_id    INTEGER NOT NULL,
    timestamp_us BIGINT NOT NULL,
    created_us   BIGINT NOT NULL,
    cancelled_us BIGINT,
    account      TEXT   NOT NULL,
    identifier   TEXT   NOT NULL,
    value        TEXT   NOT NULL,
    payload      TEXT   NOT NULL,
    PRIMARY KEY (account, identifier)
);
INSERT INTO meter_events_by_id
    SELECT s.id, e.timestamp_us, e.created_us, e.cancelled_us, e.account, e.identifier, e.value, e.payload
    FROM meter_events e
    JOIN meter_series s ON s.account = e.account AND s.meter_id = e.meter_id AND s.customer = e.customer;
DROP TABLE meter_events;
ALTER TABLE meter_events_by_id RENAME TO meter_events;
CREATE INDEX meter_events_series_time ON meter_events (series_id, timestamp_us);

-- WITHOUT ROWID: the rows are stored in key order, so a series' buckets
-- are read from adjacent pages.
CREATE TABLE usage_buckets_by_id (
    series_id       INTEGER NOT NULL,
    bucket_us       BIGINT NOT NULL,
    event_count     BIGINT NOT NULL CHECK (event_count >= 0),
    last_ts_us      BIGINT NOT NULL,
    value_sum       TEXT   NOT NULL,
    value_max       TEXT   NOT NULL,
    last_value      TEXT   NOT NULL,
    last_identifier TEXT   NOT NULL,
    PRIMARY KEY (series_id, bucket_us)
) WITHOUT ROWID;
INSERT INTO usage_buckets_by_id
    SELECT s.id, b.bucket_us, b.event_count, b.last_ts_us, b.value_sum, b.value_max, b.last_value, b.last_identifier
    FROM usage_buckets b
    JOIN meter_series s ON s.account = b.account AND s.meter_id = b.meter_id AND s.customer = b.customer;
DROP TABLE usage_buckets;
ALTER TABLE usage_buckets_by_id RENAME TO usage_buckets;
