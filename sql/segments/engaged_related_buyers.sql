-- Customers who opened each of the last 5 email campaigns sent to them AND bought, in
-- the last 180 days, a product related (product_affinity, lift >= min_lift) to the
-- offer product (`offer_sku`). Fewer than 5 campaigns sent: not engaged enough.
with sent as (
    select ce.customer_id, m.campaign_id, min(m.event_at) as sent_at
    from stg_messages m
    join int_customer_of ce on ce.identifier = 'email:' || m.email
    where m.channel = 'email' and m.event = 'sent'
    group by 1, 2
),
last_five as (
    select customer_id, campaign_id from (
        select customer_id, campaign_id,
               row_number() over (partition by customer_id order by sent_at desc, campaign_id desc) as rn
        from sent
    ) r where rn <= 5
),
opened as (
    select distinct ce.customer_id, m.campaign_id
    from stg_messages m
    join int_customer_of ce on ce.identifier = 'email:' || m.email
    where m.channel = 'email' and m.event = 'open'
),
engaged as (
    select l.customer_id
    from last_five l
    left join opened o on o.customer_id = l.customer_id and o.campaign_id = l.campaign_id
    group by l.customer_id
    having count(*) = 5 and count(o.campaign_id) = 5
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
