-- Edges of the identity graph (spec/marts.md, Identity). Nodes are `kind:value`; a row
-- with a NULL `b` adds `a` as a node of its own (every identifier seen is a node).
with order_ids as (
    select order_key,
           case when email is not null then 'email:' || email end as email_id,
           case when phone is not null then 'phone:' || phone end as phone_id
    from stg_orders
)
-- An order: its email and its phone.
select coalesce(email_id, phone_id) as a, case when email_id is not null then phone_id end as b
from order_ids where email_id is not null or phone_id is not null
-- An order and a web session: the session's client id joins the order's email/phone.
union all
select s.identifier, coalesce(o.email_id, o.phone_id)
from int_session_purchases s join order_ids o on s.order_key = o.order_key
where o.email_id is not null or o.phone_id is not null
-- A call: all its identifiers (phone, Metrica client id, GA client id).
union all
select coalesce(p, y, g), case when p is not null then coalesce(y, g) else g end
from (
    select case when caller_phone is not null then 'phone:' || caller_phone end as p,
           case when ya_client_id is not null then 'ym_client_id:' || ya_client_id end as y,
           case when ga_client_id is not null then 'ga_client_id:' || ga_client_id end as g
    from stg_calls
) c
where coalesce(p, y, g) is not null
union all
select 'phone:' || caller_phone, 'ga_client_id:' || ga_client_id
from stg_calls where caller_phone is not null and ya_client_id is not null and ga_client_id is not null
-- Every other identifier seen is a node.
union all select 'ym_client_id:' || client_id, cast(null as varchar) from stg_visits where client_id is not null
union all select 'ga_client_id:' || user_pseudo_id, cast(null as varchar) from stg_ga4_sessions
union all select 'email:' || email, cast(null as varchar) from stg_messages where email is not null
union all select 'phone:' || phone, cast(null as varchar) from stg_messages where phone is not null
union all select 'email:' || email, cast(null as varchar) from stg_consents where email is not null
union all select 'phone:' || phone, cast(null as varchar) from stg_consents where phone is not null
