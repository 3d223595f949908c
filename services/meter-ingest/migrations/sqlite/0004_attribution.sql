-- Usage nobody will bill (DESIGN.md section 9): a background job asks
-- invoicing whether each series' customer exists. attributed_us: when it
-- was found (never asked again); reported_day: the last UTC day (days since
-- the epoch) `meter.usage_unattributed` was written for the series, set in
-- the event's transaction so a day is reported once.
ALTER TABLE meter_series ADD COLUMN attributed_us BIGINT;
ALTER TABLE meter_series ADD COLUMN reported_day BIGINT;
CREATE INDEX meter_series_unattributed ON meter_series (id) WHERE attributed_us IS NULL;
