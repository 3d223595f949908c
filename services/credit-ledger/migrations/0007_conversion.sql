-- A pricing unit's rate in money (DESIGN.md §13): the currency and the
-- decimal amount of its smallest unit one whole unit is worth. Both NULL
-- when the unit does not convert.
ALTER TABLE pricing_units ADD COLUMN conversion_currency TEXT;
ALTER TABLE pricing_units ADD COLUMN conversion_unit_amount TEXT;
