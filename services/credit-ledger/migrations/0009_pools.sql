-- Credit pools (DESIGN.md §13): a grant shared with the customer's
-- descendants pays their invoices after their own grants (1: shared).
ALTER TABLE credit_grants ADD COLUMN shared_with_descendants BIGINT NOT NULL DEFAULT 0;
