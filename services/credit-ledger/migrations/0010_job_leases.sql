-- Leases on background work items (issue 19; billing_db::lease): the
-- sweepers of several replicas split the due grants and balances instead of
-- each doing all of them. A row is an item a process works on; one whose
-- lease ran out (its holder died) is anyone's.
CREATE TABLE job_leases (
    job TEXT NOT NULL,
    item TEXT NOT NULL,
    holder TEXT NOT NULL,
    until_us BIGINT NOT NULL,
    PRIMARY KEY (job, item)
);
-- A process starting gives back what a predecessor of its name held.
CREATE INDEX job_leases_holder ON job_leases (holder);
