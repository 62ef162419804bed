-- Customers who bought A in the last 180 days and never bought B, for the best rule
-- A -> B by lift (>= min_lift; ties: higher confidence, then the smaller sku). The row
-- carries the recommended `sku`.
with bought as (
    select distinct p.customer_id, i.sku, p.purchase_date
    from int_purchases p
    join stg_order_items i on 'order:' || i.order_key = p.conversion_id
    where i.sku is not null
),
recent as (
    select distinct customer_id, sku from bought
    where purchase_date > {{ var('as_of') }} - interval '180' day
),
ever as (select distinct customer_id, sku from bought),
candidates as (
    select r.customer_id, a.sku_a as because_of_sku, a.sku_b as sku, a.lift, a.confidence
    from recent r
    join product_affinity a on a.sku_a = r.sku and a.lift >= {{ var('min_lift') }}
    left join ever e on e.customer_id = r.customer_id and e.sku = a.sku_b
    where e.sku is null
)
select customer_id, sku, because_of_sku, lift
from (
    select *, row_number() over (
        partition by customer_id order by lift desc, confidence desc, sku, because_of_sku
    ) as rn
    from candidates
) best
where rn = 1
