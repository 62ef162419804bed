-- GA4 sessions built from the events up to the run's cut-off (spec sources.md 2b).
-- A session is (user_pseudo_id, ga_session_id); it starts at its earliest event. Its
-- source is the last-click manual campaign of its earliest event that has a source or
-- medium; else the collected traffic source of its earliest event that has a manual
-- source, manual medium or gclid (a gclid alone means google / cpc); else
-- (direct) / (none). Events of the same instant are ordered by file, then line.
--
-- Written for bounded memory at tens of millions of events: the events are sorted once
-- by session and time (the sort spills); one streaming window numbers them and counts
-- those with a last click or a collected source so far; one grouped aggregate then
-- picks the values of the first of each. At 100k customers (1.27M events): 8.3 s,
-- 680 MB peak. `first_value(x order by ...) filter (...)` per column took 11.3 s and
-- 1.34 GB; one first_value of a struct, 55 s and 3.9 GB.
with events as (
    select *
    from ga4_events
    where user_pseudo_id is not null
      and ga_session_id is not null
      and event_at <= {{ var('as_of_end') }}
),
ranked as (
    select
        *,
        row_number() over session_order as event_rank,
        -- How many events so far have a last click (a collected source): the first one
        -- is where the count reaches 1.
        count(case when has_last_click then 1 end) over session_order as last_clicks,
        count(case when has_collected then 1 end) over session_order as collected
    from (
        select
            *,
            lc_source is not null or lc_medium is not null as has_last_click,
            cts_source is not null or cts_medium is not null or gclid is not null as has_collected
        from events
    ) e
    window session_order as (
        partition by user_pseudo_id, ga_session_id
        order by event_at, _source_file, _source_line
        rows between unbounded preceding and current row
    )
),
sessions as (
    select
        user_pseudo_id,
        ga_session_id,
        min(event_at) as session_start,
        bool_or(has_last_click) as has_last_click,
        bool_or(has_collected) as has_collected,
        max(case when has_last_click and last_clicks = 1 then lc_source end) as lc_source,
        max(case when has_last_click and last_clicks = 1 then lc_medium end) as lc_medium,
        max(case when has_last_click and last_clicks = 1 then lc_campaign end) as lc_campaign,
        max(case when has_last_click and last_clicks = 1 then lc_content end) as lc_content,
        max(case when has_last_click and last_clicks = 1 then lc_term end) as lc_term,
        max(case when has_collected and collected = 1 then cts_source end) as cts_source,
        max(case when has_collected and collected = 1 then cts_medium end) as cts_medium,
        max(case when has_collected and collected = 1 then cts_campaign end) as cts_campaign,
        max(case when has_collected and collected = 1 then cts_content end) as cts_content,
        max(case when has_collected and collected = 1 then cts_term end) as cts_term,
        max(case when event_rank = 1 then device_category end) as device_category,
        max(case when event_rank = 1 then city end) as city,
        sum(case when event_name = 'purchase' then coalesce(purchase_revenue, 0.0) else 0.0 end)
            as revenue,
        count(*) as events
    from ranked
    group by user_pseudo_id, ga_session_id
),
purchases as (
    select user_pseudo_id, ga_session_id, array_agg(transaction_id order by transaction_id) as ids
    from (
        select distinct user_pseudo_id, ga_session_id, transaction_id
        from events
        where event_name = 'purchase' and transaction_id is not null
    ) p
    group by user_pseudo_id, ga_session_id
),
picked as (
    select
        s.*,
        case
            when has_last_click then lc_source
            when has_collected and cts_source is null and cts_medium is null then 'google'
            when has_collected then cts_source
            else '(direct)'
        end as source,
        case
            when has_last_click then lc_medium
            when has_collected and cts_source is null and cts_medium is null then 'cpc'
            when has_collected then cts_medium
            else '(none)'
        end as medium,
        p.ids
    from sessions s
    left join purchases p
        on p.user_pseudo_id = s.user_pseudo_id and p.ga_session_id = s.ga_session_id
)
select
    user_pseudo_id,
    ga_session_id,
    session_start,
    source,
    medium,
    case when has_last_click then lc_campaign else cts_campaign end as campaign,
    case when has_last_click then lc_content else cts_content end as content,
    case when has_last_click then lc_term else cts_term end as term,
    coalesce(ids, arrow_cast(make_array(), 'List(Utf8)')) as purchase_ids,
    revenue,
    events,
    device_category,
    city
from picked
