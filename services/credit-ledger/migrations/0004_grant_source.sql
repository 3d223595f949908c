-- Where a grant's credits came from, when not a client's CreateCreditGrant:
-- a subscription's recurring allocation or its rollover (JSON, see
-- domain::grant::Source). NULL for client grants.
ALTER TABLE credit_grants ADD COLUMN source TEXT;
