-- What a better first-to-second purchase conversion is worth, over the 12 business
-- months ending with the month of as_of.
with window_ as (
    select cast(date_trunc('month', {{ var('as_of') }}) as date) - interval '11 months' as first_month
),
first_buyers as (
    select p.customer_id from int_purchases p cross join window_ w
    where p.purchase_number = 1 and p.purchase_month >= w.first_month
),
repeaters as (
    select p.customer_id, sum(p.value) as later_value
    from int_purchases p join first_buyers f on f.customer_id = p.customer_id
    where p.purchase_number >= 2
    group by p.customer_id
),
turnover as (
    select coalesce(sum(c.value), 0) as turnover
    from conversions c cross join window_ w
    where c.conversion_type = 'order' and business_month(c.converted_at) >= w.first_month
),
stats as (
    select (select count(*) from first_buyers) as first_buyers,
           (select count(*) from repeaters) as repeat_buyers,
           (select avg(later_value) from repeaters) as repeat_value_per_buyer,
           (select turnover from turnover) as turnover
)
select u.uplift,
       s.first_buyers,
       cast(s.repeat_buyers as double) / nullif(s.first_buyers, 0) as repeat_rate,
       s.repeat_value_per_buyer,
       s.turnover,
       s.first_buyers * u.uplift as extra_repeat_buyers,
       s.first_buyers * u.uplift * s.repeat_value_per_buyer as extra_revenue,
       s.first_buyers * u.uplift * s.repeat_value_per_buyer / nullif(s.turnover, 0) as turnover_share
from stats s
cross join (values (0.01), (0.05), (0.10)) as u(uplift)
