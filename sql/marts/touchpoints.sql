-- Touchpoints (spec/marts.md): web sessions of known customers, and calls from static
-- numbers with a valid phone. Restricted by the job's touchpoint_origins and
-- exclude_channels.
with sessions as (
    select 'metrica:' || v.counter_id || ':' || v.visit_id as touch_id,
           'ym_client_id:' || v.client_id as identifier,
           v.visit_at as touch_at,
           lower(v.traffic_type) as traffic_type,
           v.utm_source as source, v.utm_medium as medium, v.utm_campaign as campaign,
           'metrica' as origin
    from stg_visits v where v.client_id is not null
    union all
    select 'ga4:' || g.user_pseudo_id || ':' || cast(g.ga_session_id as varchar),
           'ga_client_id:' || g.user_pseudo_id,
           g.session_start, cast(null as varchar),
           g.source, g.medium, g.campaign, 'ga4'
    from stg_ga4_sessions g
    union all
    select 'call:' || c.call_id, 'phone:' || c.caller_phone, c.call_at, cast(null as varchar),
           c.source, c.medium, c.utm_campaign, 'call'
    from stg_calls c
    where c.ya_client_id is null and c.ga_client_id is null and c.caller_phone is not null
)
select
    s.touch_id,
    c.customer_id,
    s.touch_at,
    m.channel,
    s.source,
    s.medium,
    s.campaign,
    s.origin
from sessions s
join int_customer_of c on c.identifier = s.identifier
join int_channel_map m
  on m.traffic_type_key = coalesce(s.traffic_type, '')
 and m.source_key = coalesce(lower(s.source), '')
 and m.medium_key = coalesce(lower(s.medium), '')
where s.origin in ({{ var('touchpoint_origins') }})
  and m.channel not in ({{ var('exclude_channels') }})
