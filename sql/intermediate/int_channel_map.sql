-- Channel of every distinct (traffic_type, source, medium) seen in visits, GA4
-- sessions, calls and ad spend: the first rule (by priority) that matches.
-- Keys are lower-cased; '' stands for a missing value so the map joins on equality.
with combos as (
    select distinct
        lower(traffic_type) as traffic_type,
        lower(source) as source,
        lower(medium) as medium
    from (
        select traffic_type, utm_source as source, utm_medium as medium from stg_visits
        union all select cast(null as varchar), source, medium from stg_ga4_sessions
        union all select cast(null as varchar), source, medium from stg_calls
        union all select cast(null as varchar), source, medium from stg_ad_spend
    ) s
),
matches as (
    select c.traffic_type, c.source, c.medium, r.priority, r.channel
    from combos c
    cross join stg_channel_rules r
    where r.match_all
       or (c.traffic_type is not null and r.traffic_types is not null
           and array_has(r.traffic_types, c.traffic_type))
       -- A visit without UTM but with a traffic type uses only the traffic-type conditions.
       or (not (c.source is null and c.medium is null and c.traffic_type is not null)
           and (r.sources is not null or r.mediums is not null)
           and (r.sources is null or array_has(r.sources, coalesce(c.source, 'null')))
           and (r.mediums is null or array_has(r.mediums, coalesce(c.medium, 'null'))))
),
ranked as (
    select *, row_number() over (
        partition by traffic_type, source, medium order by priority) as rn
    from matches
)
select
    coalesce(traffic_type, '') as traffic_type_key,
    coalesce(source, '') as source_key,
    coalesce(medium, '') as medium_key,
    channel
from ranked
where rn = 1
