-- The event outbox (billing_db::events; DESIGN.md section 9): written in
-- the same transaction as the change it reports, read back in
-- (position, seq) order per account by EventService.
CREATE TABLE events (
    account     TEXT   NOT NULL,
    position    BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT   NOT NULL,
    event_type  TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    data        TEXT   NOT NULL,
    created_us  BIGINT NOT NULL,
    PRIMARY KEY (account, position, seq)
);
-- WatchEvents / ListEvents filtered by type.
CREATE INDEX events_by_type ON events (account, event_type, position, seq);
