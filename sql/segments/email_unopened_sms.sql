-- Customers who got an email campaign 2 to 7 days ago and opened none of it; the row
-- names the latest such campaign. Sent to by SMS.
with unopened as (
    select customer_id, campaign_id, campaign_name, sent_at
    from int_email_campaigns
    where not opened
      and business_date(sent_at) between {{ var('as_of') }} - interval '7' day
                                     and {{ var('as_of') }} - interval '2' day
)
select customer_id, campaign_id, campaign_name
from (
    select *, row_number() over (partition by customer_id order by sent_at desc, campaign_id desc) as rn
    from unopened
) latest
where rn = 1
