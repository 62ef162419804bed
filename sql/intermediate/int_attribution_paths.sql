-- The path of every conversion after the job's path transform (`exposure`: collapse
-- consecutive repeats; `first`: first occurrence of each channel;
-- `remove_if_last_and_not_all`: drop trailing touches of the listed channels unless
-- the path has only those), renumbered 1..n. Applied before the heuristic models.
with flagged as (
    select *,
           max(case when channel not in ({{ var('path_transform_channels') }}) then raw_position end)
               over (partition by conversion_id) as last_kept_position
    from int_conversion_touches
),
kept as (
    select * from flagged
    where case {{ var('path_transform') }}
            when 'exposure' then previous_channel is null or previous_channel <> channel
            when 'first' then channel_occurrence = 1
            when 'remove_if_last_and_not_all' then last_kept_position is null or raw_position <= last_kept_position
            else true
          end
)
select conversion_id, conversion_type, customer_id, converted_at, value,
       touch_id, touch_at, channel, campaign,
       cast(row_number() over (partition by conversion_id order by touch_at, touch_id) as bigint) as position,
       cast(count(*) over (partition by conversion_id) as bigint) as path_length
from kept
