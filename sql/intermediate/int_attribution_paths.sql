-- The path of every conversion of the job's conversion types after the job's path
-- transform (`exposure`: collapse consecutive repeats; `first`: first occurrence of
-- each channel; `remove_if_last_and_not_all`: drop trailing touches of the listed
-- channels unless the path has only those), renumbered 1..n, with the per-path figures
-- the heuristic models need on every touch: the path length, the time-decay weight and
-- whether the touch is the path's last non-direct one. A conversion with an empty path
-- is one row with touch and position NULL, path_length 0, channel `(unattributed)`,
-- decay_weight 1 and is_last_non_direct true: every model gives it credit 1 there.
--
-- No whole-partition windows and no join of the paths with their own totals:
-- DataFusion gathers a whole-partition window's rows into one batch that cannot spill,
-- and a hash join's build side cannot spill either, so at 1M customers both ran out of
-- memory. Every figure comes from two streaming windows over sorted input (sorts
-- spill): a backward pass counts and sums from the path's end, and the forward pass
-- reads the path's totals off its first row (`first_value` of the backward sums).
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
    select conversion_id, conversion_type, customer_id, converted_at, value,
           touch_id, touch_at, channel, campaign,
           power(2.0, -(cast(date_part('epoch', converted_at) as double) - cast(date_part('epoch', touch_at) as double))
                 / ({{ var('half_life_days') }} * 86400.0)) as decay,
           case when channel not in ('Direct', 'Internal') then 1 else 0 end as non_direct
    from flagged
    where case {{ var('path_transform') }}
            when 'exposure' then previous_channel is null or previous_channel <> channel
            when 'first' then channel_occurrence = 1
            when 'remove_if_last_and_not_all' then last_kept_position is null or raw_position <= last_kept_position
            else true
          end
),
backward as (
    select *,
           row_number() over from_end as position_from_end,
           sum(decay) over from_end as decay_from_end,
           sum(non_direct) over from_end as non_direct_from_end
    from kept
    window from_end as (partition by conversion_id order by touch_at desc, touch_id desc
                        rows between unbounded preceding and current row)
),
forward as (
    select *,
           row_number() over from_start as position,
           first_value(decay_from_end) over from_start as decay_total,
           first_value(non_direct_from_end) over from_start as non_direct_total
    from backward
    window from_start as (partition by conversion_id order by touch_at, touch_id
                          rows between unbounded preceding and current row)
)
select conversion_id, conversion_type, customer_id, converted_at, value,
       touch_id, touch_at, channel, campaign,
       cast(position as bigint) as position,
       cast(position + position_from_end - 1 as bigint) as path_length,
       decay / decay_total as decay_weight,
       case when non_direct_total = 0 then position_from_end = 1
            else non_direct = 1 and non_direct_from_end = 1
       end as is_last_non_direct
from forward
union all
-- Conversions with an empty path: the anti join's build side is one short row per
-- conversion with a path.
select c.conversion_id, c.conversion_type, c.customer_id, c.converted_at, c.value,
       cast(null as varchar), arrow_cast(null, 'Timestamp(Microsecond, Some("UTC"))'), '(unattributed)', cast(null as varchar),
       cast(null as bigint), cast(0 as bigint), 1.0, true
from conversions c
where c.conversion_type in ({{ var('conversion_types') }})
  and not exists (select 1 from int_conversion_touches t
                  where t.conversion_id = c.conversion_id and t.raw_position = 1)
