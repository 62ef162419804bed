-- Markov input paths in the shape other Markov tools read: channels joined by ' > ',
-- with conversions, value and nulls (spec/marts.md, markov).
-- Converting: the raw path of every conversion with a non-empty path.
-- Non-converting: per customer and conversion type, the touches after their last
-- conversion of that type (all when none) between the start of business day
-- as_of - lookback_days and the end of as_of.
with types as (
    select unnest(make_array({{ var('conversion_types') }})) as conversion_type
),
converting as (
    select conversion_type, conversion_id, max(value) as value,
           channel_path(channel, raw_position) as path
    from int_conversion_touches
    group by conversion_type, conversion_id
),
last_conversion as (
    select customer_id, conversion_type, max(converted_at) as last_at
    from conversions where customer_id is not null
    group by customer_id, conversion_type
),
after_last as (
    select ty.conversion_type, t.customer_id, t.touch_at, t.touch_id, t.channel
    from touchpoints t
    cross join types ty
    left join last_conversion l
      on l.customer_id = t.customer_id and l.conversion_type = ty.conversion_type
    where (l.last_at is null or t.touch_at > l.last_at)
      and t.touch_at >= {{ var('lookback_start') }}
      and t.touch_at <= {{ var('as_of_end') }}
),
non_converting as (
    select conversion_type, customer_id,
           channel_path(channel, touch_at, touch_id) as path
    from after_last
    group by conversion_type, customer_id
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
