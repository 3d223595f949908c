-- Invoicing's events move from its own `outbox` table to the shared
-- `events` table (0006) that EventService reads. Rows written before this
-- migration keep their id, type, invoice and time, at position 0 in id
-- order; their `data` is empty (the old rows held no invoice object), so
-- the feed shows them without data.
INSERT INTO events (account, position, seq, id, event_type, subject, data, created_us)
SELECT account, 0, ROW_NUMBER() OVER (PARTITION BY account ORDER BY id) - 1, id, event_type, subject, '', created_us
FROM outbox;
DROP TABLE outbox;
-- ListInvoiceEvents filtered by invoice.
CREATE INDEX events_by_subject ON events (account, subject, position, seq);
