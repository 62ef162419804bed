-- Customers who got an email campaign 2 to 7 days ago and opened none of it; the row
-- names the latest such campaign. Sent to by SMS.
with sent as (
    select ce.customer_id, m.campaign_id, m.campaign_name, min(m.event_at) as sent_at
    from stg_messages m
    join int_customer_of ce on ce.identifier = 'email:' || m.email
    where m.channel = 'email' and m.event = 'sent'
    group by 1, 2, 3
),
opened as (
    select distinct ce.customer_id, m.campaign_id
    from stg_messages m
    join int_customer_of ce on ce.identifier = 'email:' || m.email
    where m.channel = 'email' and m.event = 'open'
),
unopened as (
    select s.customer_id, s.campaign_id, s.campaign_name, s.sent_at
    from sent s
    left join opened o on o.customer_id = s.customer_id and o.campaign_id = s.campaign_id
    where o.campaign_id is null
      and business_date(s.sent_at) between {{ var('as_of') }} - interval '7' day
                                       and {{ var('as_of') }} - interval '2' day
)
select customer_id, campaign_id, campaign_name
from (
    select *, row_number() over (partition by customer_id order by sent_at desc, campaign_id desc) as rn
    from unopened
) latest
where rn = 1
