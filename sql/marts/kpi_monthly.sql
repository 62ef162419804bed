-- Business KPIs per business month, from the first month with a purchase to the
-- month of as_of. Ratios are NULL where their denominator is 0.
with bounds as (
    select min(purchase_month) as first_month,
           cast(date_trunc('month', {{ var('as_of') }}) as date) as last_month
    from int_purchases
),
months as (
    select cast(unnest(generate_series(first_month, last_month, interval '1 month')) as date) as month
    from bounds where first_month is not null
),
orders as (
    select business_month(converted_at) as month, count(*) as orders, sum(value) as revenue
    from conversions where conversion_type = 'order' group by 1
),
leads as (
    select business_month(converted_at) as month, count(*) as leads
    from conversions where conversion_type = 'lead' group by 1
),
customers_by_month as (
    select p.purchase_month as month,
           count(distinct case when p.purchase_number = 1 then p.customer_id end) as new_customers,
           count(distinct case when f.first_month < p.purchase_month then p.customer_id end) as returning_customers
    from int_purchases p
    join (select customer_id, min(purchase_month) as first_month from int_purchases group by customer_id) f
      on f.customer_id = p.customer_id
    group by p.purchase_month
),
spend as (
    select cast(date_trunc('month', date) as date) as month, sum(cost) as cost from stg_ad_spend group by 1
)
select m.month,
       coalesce(c.new_customers, 0) as new_customers,
       coalesce(c.returning_customers, 0) as returning_customers,
       coalesce(o.orders, 0) as orders,
       coalesce(o.revenue, 0) as revenue,
       o.revenue / nullif(o.orders, 0) as aov,
       coalesce(l.leads, 0) as leads,
       coalesce(s.cost, 0) as cost,
       coalesce(s.cost, 0) / nullif(c.new_customers, 0) as cac,
       coalesce(s.cost, 0) / nullif(l.leads, 0) as cpl,
       coalesce(s.cost, 0) / nullif(o.revenue, 0) as drr
from months m
left join orders o on o.month = m.month
left join leads l on l.month = m.month
left join customers_by_month c on c.month = m.month
left join spend s on s.month = m.month
