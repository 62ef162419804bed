-- Association rules sku_a -> sku_b over purchases (order conversions), for pairs in
-- at least min_pair_orders purchases.
with baskets as (
    select distinct i.order_key, i.sku
    from stg_order_items i
    join conversions c on c.conversion_id = 'order:' || i.order_key and c.conversion_type = 'order'
    where i.sku is not null
),
total as (select count(*) as orders from conversions where conversion_type = 'order'),
singles as (select sku, count(*) as orders_sku from baskets group by sku),
pairs as (
    select a.sku as sku_a, b.sku as sku_b, count(*) as orders_ab
    from baskets a join baskets b on a.order_key = b.order_key and a.sku <> b.sku
    group by a.sku, b.sku
    having count(*) >= {{ var('min_pair_orders') }}
)
select p.sku_a, p.sku_b, sa.orders_sku as orders_a, sb.orders_sku as orders_b, p.orders_ab,
       t.orders,
       cast(p.orders_ab as double) / t.orders as support,
       cast(p.orders_ab as double) / sa.orders_sku as confidence,
       (cast(p.orders_ab as double) / sa.orders_sku) / (cast(sb.orders_sku as double) / t.orders) as lift
from pairs p
join singles sa on sa.sku = p.sku_a
join singles sb on sb.sku = p.sku_b
cross join total t
