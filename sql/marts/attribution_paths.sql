-- Markov input paths in the shape other Markov tools read: channels joined by ' > ',
-- with conversions, value and nulls (spec/marts.md, markov).
-- Converting: the raw path of every conversion with a non-empty path.
-- Non-converting: per customer and conversion type, the touches after their last
-- conversion of that type (all when none) between the start of business day
-- as_of - lookback_days and the end of as_of.
--
-- Runs on one partition ([datafusion] in the .toml): int_conversion_touches is stored
-- sorted by conversion and touchpoints by customer, so both path aggregates stream
-- (a path is finished when the next conversion or customer starts) instead of holding
-- every path's channel list in a hash table (at 1M customers: 8.7 GB of RSS).
with converting as (
    select conversion_type, conversion_id, max(value) as value,
           channel_path(channel, raw_position) as path
    from int_conversion_touches
    group by conversion_id, conversion_type
),
last_conversion as (
    select customer_id, conversion_type, max(converted_at) as last_at
    from conversions where customer_id is not null
    group by customer_id, conversion_type
),
-- Every touch in the window once per conversion type (unnest keeps the touches' order;
-- a cross join would hold all touchpoints as its build side).
window_touches as (
    select customer_id, touch_at, touch_id, channel,
           unnest(make_array({{ var('conversion_types') }})) as conversion_type
    from touchpoints
    where touch_at >= {{ var('lookback_start') }}
      and touch_at <= {{ var('as_of_end') }}
),
after_last as (
    select t.conversion_type, t.customer_id, t.touch_at, t.touch_id, t.channel
    from last_conversion l  -- the build side: one short row per customer and type
    right join window_touches t
      on l.customer_id = t.customer_id and l.conversion_type = t.conversion_type
    where l.last_at is null or t.touch_at > l.last_at
),
non_converting as (
    select conversion_type, customer_id,
           channel_path(channel, touch_at, touch_id) as path
    from after_last
    group by customer_id, conversion_type
)
select conversion_type, path,
       cast(sum(conversions) as bigint) as conversions,
       sum(value) as value,
       cast(sum(nulls) as bigint) as nulls
from (
    select conversion_type, path, 1 as conversions, value, 0 as nulls from converting
    union all
    select conversion_type, path, 0, 0.0, 1 from non_converting
) p
group by conversion_type, path
