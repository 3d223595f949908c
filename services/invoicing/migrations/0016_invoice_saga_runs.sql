-- The attempt log of invoices' sagas (issue 19): one row per run of an
-- invoice's saga under its claim (ops/claims.rs), from the claim to its
-- release, with the instance that ran it, how it ended (`completed`: it
-- completed the finalize; `released`; `error`: a step failed; `abandoned`:
-- its process died and a successor of the same name gave the claim back)
-- and how many other instances' runs were open when it started
-- (`others_open`, counted under the invoice's row lock: 0 unless a claim
-- was taken over from a run that never ended). Operators read here why an
-- invoice took long or which replica ran it.
CREATE TABLE invoice_saga_runs (
    account TEXT NOT NULL,
    invoice TEXT NOT NULL,
    id TEXT NOT NULL,
    instance TEXT NOT NULL,
    started_us BIGINT NOT NULL,
    ended_us BIGINT,
    outcome TEXT,
    others_open BIGINT NOT NULL,
    PRIMARY KEY (account, invoice, id)
);
-- A process starting closes what a predecessor of its name left open.
CREATE INDEX invoice_saga_runs_open ON invoice_saga_runs (instance) WHERE ended_us IS NULL;
