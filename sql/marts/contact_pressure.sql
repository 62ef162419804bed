-- Contacts we initiate (message events `sent`) per customer, business year, channel
-- and customer status (existing: a purchase strictly before the contact).
with sent as (
    select m.channel, m.event_at,
           coalesce(ce.customer_id, cp.customer_id) as customer_id
    from stg_messages m
    left join int_customer_of ce on ce.identifier = 'email:' || m.email
    left join int_customer_of cp on cp.identifier = 'phone:' || m.phone
    where m.event = 'sent' and m.channel in ('email', 'sms')
),
first_purchase as (
    select customer_id, min(converted_at) as first_at from int_purchases group by customer_id
)
select s.customer_id,
       cast(date_part('year', business_date(s.event_at)) as bigint) as year,
       s.channel,
       case when f.first_at < s.event_at then 'existing' else 'prospect' end as customer_status,
       count(*) as contacts
from sent s
left join first_purchase f on f.customer_id = s.customer_id
where s.customer_id is not null
group by 1, 2, 3, 4
