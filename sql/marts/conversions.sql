-- Conversions (spec/marts.md): orders that count as purchases and target calls (leads).
with order_rows as (
    select o.*,
           'email:' || o.email as email_id,
           'phone:' || o.phone as phone_id
    from stg_orders o
),
-- An order with neither email nor phone: the customer of the earliest web session
-- whose purchase ids contain its key.
earliest_session as (
    select order_key, identifier from (
        select order_key, identifier,
               row_number() over (partition by order_key order by session_at, identifier) as rn
        from int_session_purchases
    ) s where rn = 1
),
orders as (
    select
        'order:' || o.order_key as conversion_id,
        'order' as conversion_type,
        coalesce(ce.customer_id, cp.customer_id, cs.customer_id) as customer_id,
        o.created_at as converted_at,
        coalesce(o.total, 0) - coalesce(o.refunded_amount, 0) as value
    from order_rows o
    left join int_customer_of ce on ce.identifier = o.email_id
    left join int_customer_of cp on cp.identifier = o.phone_id
    left join earliest_session es on es.order_key = o.order_key and o.email is null and o.phone is null
    left join int_customer_of cs on cs.identifier = es.identifier
    where o.financial_status in ('paid', 'partially_paid', 'partially_refunded')
      and o.cancelled_at is null
),
leads as (
    select
        'lead:' || c.call_id as conversion_id,
        'lead' as conversion_type,
        coalesce(cp.customer_id, cy.customer_id, cg.customer_id) as customer_id,
        c.call_at as converted_at,
        cast(0 as double) as value
    from stg_calls c
    left join int_customer_of cp on cp.identifier = 'phone:' || c.caller_phone
    left join int_customer_of cy on cy.identifier = 'ym_client_id:' || c.ya_client_id
    left join int_customer_of cg on cg.identifier = 'ga_client_id:' || c.ga_client_id
    where c.target_call
)
select * from orders
union all
select * from leads
