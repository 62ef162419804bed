-- One row per customer (spec/marts.md, Identity).
with ids as (
    select i.customer_id, i.kind, i.value, e.at
    from identity_map i
    left join int_identifier_events e on e.identifier = i.kind || ':' || i.value
),
-- Of the customer's identifiers of a kind: the one with the latest timestamp on any
-- loaded order, call, message event or consent; ties to the smallest value.
latest as (
    select customer_id, kind, value from (
        select customer_id, kind, value,
               row_number() over (partition by customer_id, kind order by last_at desc nulls last, value) as rn
        from (
            select customer_id, kind, value, max(at) as last_at
            from ids where kind in ('email', 'phone')
            group by customer_id, kind, value
        ) k
    ) r where rn = 1
),
seen as (
    select customer_id, min(at) as first_seen_at from ids group by customer_id
),
purchases as (
    select customer_id,
           min(converted_at) as first_order_at,
           max(converted_at) as last_order_at,
           count(*) as orders,
           sum(value) as revenue
    from conversions
    where conversion_type = 'order' and customer_id is not null
    group by customer_id
)
select
    s.customer_id,
    e.value as email,
    p.value as phone,
    s.first_seen_at,
    o.first_order_at,
    o.last_order_at,
    coalesce(o.orders, 0) as orders,
    coalesce(o.revenue, 0) as revenue
from seen s
left join latest e on e.customer_id = s.customer_id and e.kind = 'email'
left join latest p on p.customer_id = s.customer_id and p.kind = 'phone'
left join purchases o on o.customer_id = s.customer_id
