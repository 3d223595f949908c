-- Customer hierarchies (DESIGN.md §13): a customer's parent, whose grants
-- shared with descendants pay its invoices after its own. NULL: no parent.
ALTER TABLE customers ADD COLUMN parent TEXT;
CREATE INDEX customers_by_parent ON customers (account, parent) WHERE parent IS NOT NULL;
