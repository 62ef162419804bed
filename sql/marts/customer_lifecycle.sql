-- Lifecycle stage of every customer as of as_of, and the shop's typical
-- inter-purchase interval (median of all consecutive-purchase gaps, pooled).
with last_purchase as (
    select customer_id,
           cast({{ var('as_of') }} - min(purchase_date) as bigint) as days_since_first,
           cast({{ var('as_of') }} - max(purchase_date) as bigint) as recency_days
    from int_purchases group by customer_id
),
gaps as (
    select (cast(date_part('epoch', p2.converted_at) as double)
            - cast(date_part('epoch', p1.converted_at) as double)) / 86400.0 as gap_days
    from int_purchases p1
    join int_purchases p2 on p2.customer_id = p1.customer_id and p2.purchase_number = p1.purchase_number + 1
),
typical as (select median(gap_days) as typical_interpurchase_days from gaps)
select c.customer_id,
       case
         when l.customer_id is null then 'prospect'
         when l.days_since_first <= {{ var('new_days') }} then 'new'
         when l.recency_days <= {{ var('active_days') }} then 'active'
         when l.recency_days <= {{ var('lapsing_days') }} then 'lapsing'
         else 'churned'
       end as stage,
       l.recency_days,
       t.typical_interpurchase_days
from customers c
left join last_purchase l on l.customer_id = c.customer_id
cross join typical t
