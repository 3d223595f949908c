-- Real-time controls (DESIGN.md section 12): a subscription's overage
-- policy and usage thresholds (JSON, see domain::realtime::Controls), and
-- how many thresholds it has, for the worker's queue.
ALTER TABLE subscriptions ADD COLUMN controls TEXT NOT NULL DEFAULT '{}';
ALTER TABLE subscriptions ADD COLUMN usage_thresholds BIGINT NOT NULL DEFAULT 0;
CREATE INDEX subscriptions_watched ON subscriptions (account, id)
    WHERE status = 'active' AND usage_thresholds > 0;

-- One row per subscription, period and threshold that fired, inserted in
-- the transaction that writes the event: each threshold fires once per
-- period, whatever crashes, retries or replicas.
CREATE TABLE usage_threshold_crossings (
    account         TEXT   NOT NULL,
    subscription    TEXT   NOT NULL,
    period_start_us BIGINT NOT NULL,
    threshold       BIGINT NOT NULL,
    usage           TEXT   NOT NULL,
    created_us      BIGINT NOT NULL,
    PRIMARY KEY (account, subscription, period_start_us, threshold)
);
