-- Purchases (order conversions with a customer), numbered per customer by
-- (converted_at, conversion_id), with business dates and months.
select customer_id, conversion_id, converted_at, value,
       business_date(converted_at) as purchase_date,
       business_month(converted_at) as purchase_month,
       cast(row_number() over (partition by customer_id order by converted_at, conversion_id) as bigint) as purchase_number
from conversions
where conversion_type = 'order' and customer_id is not null
