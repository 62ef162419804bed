-- One row per customer (spec/marts.md, Identity).
-- Each identifier's evidence (first and last timestamp on any loaded order, call,
-- message event, consent, visit or session) is aggregated once, then every customer
-- is built in one grouped pass over its identifiers.
with evidence as (
    select identifier, min(at) as first_at, max(at) as last_at
    from int_identifier_events
    group by identifier
),
ids as (
    select i.customer_id, i.kind, i.value, e.first_at, e.last_at
    from identity_map i
    left join evidence e on e.identifier = i.kind || ':' || i.value
),
-- Of the customer's identifiers of a kind: the one with the latest timestamp on any
-- loaded row; ties to the smallest value.
ranked as (
    select customer_id, kind, value, first_at,
           row_number() over (partition by customer_id, kind order by last_at desc nulls last, value) as rn
    from ids
),
per_customer as (
    select customer_id,
           max(case when kind = 'email' and rn = 1 then value end) as email,
           max(case when kind = 'phone' and rn = 1 then value end) as phone,
           min(first_at) as first_seen_at
    from ranked
    group by customer_id
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
    c.customer_id,
    c.email,
    c.phone,
    c.first_seen_at,
    o.first_order_at,
    o.last_order_at,
    coalesce(o.orders, 0) as orders,
    coalesce(o.revenue, 0) as revenue
from per_customer c
left join purchases o on o.customer_id = c.customer_id
