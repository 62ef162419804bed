-- Customers who opened each of the last 5 email campaigns sent to them AND bought, in
-- the last 180 days, a product related (product_affinity, lift >= min_lift) to the
-- offer product (`offer_sku`). Fewer than 5 campaigns sent: not engaged enough.
with last_five as (
    select customer_id, opened from (
        select customer_id, opened,
               row_number() over (partition by customer_id order by sent_at desc, campaign_id desc) as rn
        from int_email_campaigns
    ) r where rn <= 5
),
engaged as (
    select customer_id
    from last_five
    group by customer_id
    having count(*) = 5 and bool_and(opened)
),
related as (
    select sku_b as sku, lift from product_affinity
    where sku_a = {{ var('offer_sku') }} and lift >= {{ var('min_lift') }}
),
related_buys as (
    select p.customer_id, i.sku, r.lift, p.purchase_date
    from int_purchases p
    join stg_order_items i on 'order:' || i.order_key = p.conversion_id
    join related r on r.sku = i.sku
    where p.purchase_date > {{ var('as_of') }} - interval '180' day
)
select e.customer_id,
       {{ var('offer_sku') }} as offer_sku,
       max(b.purchase_date) as last_related_purchase_date
from engaged e
join related_buys b on b.customer_id = e.customer_id
group by e.customer_id
