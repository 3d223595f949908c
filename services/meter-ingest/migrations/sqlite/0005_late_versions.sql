-- Cached usage (DESIGN.md section 12): readers cache a series' usage over
-- hours that ended more than two hours ago. Every change to such an hour
-- (an event more than an hour late, a cancel) bumps `late_version` in its
-- transaction, and a cached total is used only while the version it was
-- computed under is still the current one.
ALTER TABLE meter_series ADD COLUMN late_version BIGINT NOT NULL DEFAULT 0;
