-- Bought credits (DESIGN.md section 11): what each credit cost (JSON, see
-- domain::grant::CostBasis), and whether the purchase's invoice is still
-- unpaid (1: in the ledger balance, not available, applied to nothing).
ALTER TABLE credit_grants ADD COLUMN cost_basis TEXT;
ALTER TABLE credit_grants ADD COLUMN pending_payment BIGINT NOT NULL DEFAULT 0;
