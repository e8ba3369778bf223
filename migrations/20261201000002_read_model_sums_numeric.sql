-- Money sums of the read models (revenue per event and section, what a customer spent) are kept
-- as numeric, summed exactly past the range of one bigint amount (like MoneyTotal's i128 in
-- memory): many legal sales can never overflow them. Single amounts stay bigint.
ALTER TABLE rm_event_sales ALTER COLUMN revenue TYPE numeric USING revenue::numeric;
ALTER TABLE rm_section_sales ALTER COLUMN revenue TYPE numeric USING revenue::numeric;
ALTER TABLE rm_customer_spent ALTER COLUMN amount TYPE numeric USING amount::numeric;
