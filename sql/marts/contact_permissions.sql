-- The latest statement per contact and channel (spec/sources.md §5): consents from
-- the CRM, Shopify's `Accepts Marketing` (email, at order time) and the message
-- events `unsubscribe`, `bounce` (hard: the service reports only hard bounces) and
-- `complaint`. The publisher drops a contact whose latest statement is `revoked`.
-- At the same timestamp a revocation wins over a grant.
with statements as (
    select channel, email, phone, status, 'consent_' || status as reason, updated_at as stated_at
    from stg_consents
    where status in ('granted', 'revoked')
    union all
    select 'email', email, cast(null as varchar),
           case when accepts_marketing then 'granted' else 'revoked' end,
           case when accepts_marketing then 'accepts_marketing' else 'declined_marketing' end,
           created_at
    from stg_orders
    where email is not null and accepts_marketing is not null
    union all
    select channel, email, phone, 'revoked', event, event_at
    from stg_messages
    where event in ('unsubscribe', 'bounce', 'complaint')
),
by_contact as (
    select channel, 'email' as kind, email as contact, status, reason, stated_at
    from statements where email is not null
    union all
    select channel, 'phone' as kind, phone as contact, status, reason, stated_at
    from statements where phone is not null
)
select channel, kind, contact, status, reason, stated_at
from (
    select *, row_number() over (
        partition by channel, kind, contact
        order by stated_at desc, case status when 'revoked' then 0 else 1 end, reason
    ) as rn
    from by_contact
) latest
where rn = 1
