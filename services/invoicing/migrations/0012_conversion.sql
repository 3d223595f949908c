-- A line in a pricing unit that converts to money (DESIGN.md §13): the
-- rate frozen when the invoice was frozen for finalizing (currency and
-- decimal amount of its smallest unit per whole unit), and once credits
-- are applied, what the uncovered units are due in that currency.
ALTER TABLE invoice_lines ADD COLUMN conversion_currency TEXT;
ALTER TABLE invoice_lines ADD COLUMN conversion_unit_amount TEXT;
ALTER TABLE invoice_lines ADD COLUMN converted_amount BIGINT;
