-- The path of every conversion after the job's path transform (`exposure`: collapse
-- consecutive repeats; `first`: first occurrence of each channel;
-- `remove_if_last_and_not_all`: drop trailing touches of the listed channels unless
-- the path has only those), renumbered 1..n. Applied before the heuristic models.
--
-- No whole-partition windows: DataFusion gathers all rows of a partition into one batch
-- for them and that batch cannot spill, so at scale the model ran out of memory. A
-- path's length is position + position counted from the end - 1 (two streaming
-- windows over sorted input, and sorts spill), and a path's last kept touch comes from
-- a grouped aggregate.
with last_kept as (
    select conversion_id,
           max(case when channel not in ({{ var('path_transform_channels') }}) then raw_position end) as last_kept_position
    from int_conversion_touches
    group by conversion_id
),
flagged as (
    select t.*, l.last_kept_position
    from last_kept l  -- the small side first: it is the hash join's build side
    join int_conversion_touches t on t.conversion_id = l.conversion_id
),
kept as (
    select * from flagged
    where case {{ var('path_transform') }}
            when 'exposure' then previous_channel is null or previous_channel <> channel
            when 'first' then channel_occurrence = 1
            when 'remove_if_last_and_not_all' then last_kept_position is null or raw_position <= last_kept_position
            else true
          end
),
numbered as (
    select conversion_id, conversion_type, customer_id, converted_at, value,
           touch_id, touch_at, channel, campaign,
           row_number() over (partition by conversion_id order by touch_at, touch_id) as position,
           row_number() over (partition by conversion_id order by touch_at desc, touch_id desc) as position_from_end
    from kept
)
select conversion_id, conversion_type, customer_id, converted_at, value,
       touch_id, touch_at, channel, campaign,
       cast(position as bigint) as position,
       cast(position + position_from_end - 1 as bigint) as path_length
from numbered
