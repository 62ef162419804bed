-- Email campaigns per customer: when the campaign was first sent to them and whether
-- they opened it (message events mapped to customers by email). Read by segments.
with events as (
    select ce.customer_id, m.campaign_id, m.campaign_name, m.event, m.event_at
    from stg_messages m
    join int_customer_of ce on ce.identifier = 'email:' || m.email
    where m.channel = 'email' and m.event in ('sent', 'open')
)
select customer_id, campaign_id,
       min(campaign_name) as campaign_name,
       min(case when event = 'sent' then event_at end) as sent_at,
       bool_or(event = 'open') as opened
from events
group by customer_id, campaign_id
having min(case when event = 'sent' then event_at end) is not null
