-- Monthly acquisition cohorts (business month of the first purchase): size, active
-- customers and revenue in each month from 0 to the month of as_of, months without
-- activity included.
with cohort as (
    select customer_id, purchase_month as cohort_month
    from int_purchases where purchase_number = 1
),
sizes as (
    select cohort_month, count(*) as cohort_size from cohort group by cohort_month
),
-- Month numbers 0..n of each cohort from a cross join with a number series (a cohort
-- older than 100 years is not a cohort). Not `unnest(range(...))`: DataFusion 55 takes
-- the unnested column as ordered with `cohort_month` and drops it from sort keys, which
-- left rows within a cohort in arbitrary order.
months as (
    select s.cohort_month, s.cohort_size, g.value as month_number
    from sizes s
    cross join generate_series(0, 1200) as g
    where g.value <= cast(((date_part('year', {{ var('as_of') }}) - date_part('year', s.cohort_month)) * 12
                           + date_part('month', {{ var('as_of') }}) - date_part('month', s.cohort_month)) as bigint)
),
-- A customer's purchases and revenue per business month: one row per active customer
-- and month, so that `activity` counts rows (not `count(distinct customer_id)`, which
-- DataFusion computes as a second grouping by customer).
customer_months as (
    select customer_id, purchase_month, sum(value) as revenue
    from int_purchases
    group by customer_id, purchase_month
),
activity as (
    select c.cohort_month,
           cast((date_part('year', p.purchase_month) - date_part('year', c.cohort_month)) * 12
                + date_part('month', p.purchase_month) - date_part('month', c.cohort_month) as bigint) as month_number,
           count(*) as active_customers,
           sum(p.revenue) as revenue
    from customer_months p join cohort c on c.customer_id = p.customer_id
    group by 1, 2
)
select m.cohort_month, m.month_number, m.cohort_size,
       coalesce(a.active_customers, 0) as active_customers,
       cast(coalesce(a.active_customers, 0) as double) / m.cohort_size as retention_rate,
       coalesce(a.revenue, 0) as revenue,
       sum(coalesce(a.revenue, 0)) over (partition by m.cohort_month order by m.month_number
                                         rows between unbounded preceding and current row) / m.cohort_size
           as cumulative_revenue_per_customer
from months m
left join activity a on a.cohort_month = m.cohort_month and a.month_number = m.month_number
