-- Customers who made a target call in the last 30 days and have no purchase since
-- (their latest such call). For the call centre, by SMS channel rules.
with leads as (
    select customer_id, max(converted_at) as last_lead_at
    from conversions
    where conversion_type = 'lead' and customer_id is not null
      and business_date(converted_at) > {{ var('as_of') }} - interval '30' day
    group by customer_id
)
select l.customer_id, l.last_lead_at
from leads l
where not exists (
    select 1 from int_purchases p
    where p.customer_id = l.customer_id and p.converted_at > l.last_lead_at
)
