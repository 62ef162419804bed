-- GA4 sessions built from the events up to the run's cut-off (spec sources.md 2b).
-- A session is (user_pseudo_id, ga_session_id); it starts at its earliest event. Its
-- source is the last-click manual campaign of its earliest event that has a source or
-- medium; else the collected traffic source of its earliest event that has a manual
-- source, manual medium or gclid (a gclid alone means google / cpc); else
-- (direct) / (none). Events of the same instant are ordered by file, then line.
with events as (
    select *
    from ga4_events
    where user_pseudo_id is not null
      and ga_session_id is not null
      and event_at <= {{ var('as_of_end') }}
),
sessions as (
    select
        user_pseudo_id,
        ga_session_id,
        min(event_at) as session_start,
        first_value(
            named_struct(
                'source', lc_source, 'medium', lc_medium, 'campaign', lc_campaign,
                'content', lc_content, 'term', lc_term
            )
            order by event_at, _source_file, _source_line
        ) filter (where lc_source is not null or lc_medium is not null) as last_click,
        first_value(
            named_struct(
                'source', cts_source, 'medium', cts_medium, 'campaign', cts_campaign,
                'content', cts_content, 'term', cts_term, 'gclid', gclid
            )
            order by event_at, _source_file, _source_line
        ) filter (
            where cts_source is not null or cts_medium is not null or gclid is not null
        ) as collected,
        first_value(
            named_struct('device_category', device_category, 'city', city)
            order by event_at, _source_file, _source_line
        ) as first_event,
        array_sort(
            array_agg(distinct transaction_id)
                filter (where event_name = 'purchase' and transaction_id is not null)
        ) as purchase_ids,
        sum(case when event_name = 'purchase' then coalesce(purchase_revenue, 0.0) else 0.0 end)
            as revenue,
        count(*) as events
    from events
    group by user_pseudo_id, ga_session_id
)
select
    user_pseudo_id,
    ga_session_id,
    session_start,
    case
        when last_click is not null then last_click['source']
        when collected is not null then
            case
                when collected['source'] is null and collected['medium'] is null then 'google'
                else collected['source']
            end
        else '(direct)'
    end as source,
    case
        when last_click is not null then last_click['medium']
        when collected is not null then
            case
                when collected['source'] is null and collected['medium'] is null then 'cpc'
                else collected['medium']
            end
        else '(none)'
    end as medium,
    case when last_click is not null then last_click['campaign'] else collected['campaign'] end as campaign,
    case when last_click is not null then last_click['content'] else collected['content'] end as content,
    case when last_click is not null then last_click['term'] else collected['term'] end as term,
    coalesce(purchase_ids, arrow_cast(make_array(), 'List(Utf8)')) as purchase_ids,
    revenue,
    events,
    first_event['device_category'] as device_category,
    first_event['city'] as city
from sessions
