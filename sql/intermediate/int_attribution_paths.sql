-- The path of every conversion of the job's conversion types after the job's path
-- transform (`exposure`: collapse consecutive repeats; `first`: first occurrence of
-- each channel; `remove_if_last_and_not_all`: drop trailing touches of the listed
-- channels unless the path has only those), renumbered 1..n, with the per-path figures
-- the heuristic models need on every touch: the path length, the time-decay weight and
-- whether the touch is the path's last non-direct one. A conversion with an empty path
-- is one row with touch and position NULL, path_length 0, channel `(unattributed)`,
-- decay_weight 1 and is_last_non_direct true: every model gives it credit 1 there.
--
-- Every step streams over int_conversion_touches in its recorded order (conversion_id,
-- raw_position), on one partition (`[datafusion]` in the .toml): the transform is a
-- filter, `position` a row_number over that order (the raw position itself when there
-- is no transform), and the per-path figures an aggregate of consecutive rows. Joining
-- the touches with their path's figures keeps the touches' order (the figures, one
-- short row per conversion, are the hash join's build side), and so does the anti join
-- of the empty paths (conversions, read in conversion_id order, are its probe side), so
-- the union is merged, not sorted. No window gathers a whole path (DataFusion gathers a
-- whole-partition window's rows into one batch that cannot spill).
with touches as (
    -- The previous touch's channel, which only `exposure` reads: for any other
    -- transform the `case` folds to NULL and DataFusion drops the window.
    select *,
           case when {{ var('path_transform') }} = 'exposure'
                then lag(channel) over (partition by conversion_id order by raw_position)
           end as previous_channel
    from int_conversion_touches
),
kept as (
    select conversion_id, conversion_type, customer_id, converted_at, value,
           touch_id, touch_at, channel, campaign, raw_position,
           power(2.0, -(cast(date_part('epoch', converted_at) as double) - cast(date_part('epoch', touch_at) as double))
                 / ({{ var('half_life_days') }} * 86400.0)) as decay,
           channel not in ('Direct', 'Internal') as non_direct
    from touches t
    -- The transform's condition: DataFusion folds this `case` to the one branch of the
    -- job's transform, so a transform not used costs nothing (not even its subquery).
    where case
            when {{ var('path_transform') }} = 'exposure' then previous_channel is null or previous_channel <> channel
            -- the first occurrence of each channel in the path
            when {{ var('path_transform') }} = 'first' then raw_position = (
                select min(f.raw_position) from int_conversion_touches f
                where f.conversion_id = t.conversion_id and f.channel = t.channel)
            -- trailing touches of the listed channels go, unless the path has only those
            when {{ var('path_transform') }} = 'remove_if_last_and_not_all' then coalesce(raw_position <= (
                select max(case when k.channel not in ({{ var('path_transform_channels') }}) then k.raw_position end)
                from int_conversion_touches k
                where k.conversion_id = t.conversion_id), true)
            else true
          end
),
paths as (
    select conversion_id,
           count(*) as path_length,
           sum(decay) as decay_total,
           -- the last non-direct touch, or the last touch of a path of only Direct/Internal
           coalesce(max(case when non_direct then raw_position end), max(raw_position)) as last_non_direct_raw
    from kept
    group by conversion_id
),
numbered as (
    -- Without a transform every touch is kept and its position is its raw position:
    -- DataFusion folds the `case` and drops the window, which would otherwise cost a
    -- third of this model's time (a row_number over millions of small partitions).
    select *,
           case when {{ var('path_transform') }} = 'none' then raw_position
                else row_number() over (partition by conversion_id order by raw_position)
           end as position
    from kept
)
select t.conversion_id, t.conversion_type, t.customer_id, t.converted_at, t.value,
       t.touch_id, t.touch_at, t.channel, t.campaign,
       cast(t.position as bigint) as position,
       p.path_length,
       t.decay / p.decay_total as decay_weight,
       t.raw_position = p.last_non_direct_raw as is_last_non_direct
from paths p  -- the small side first: it is the hash join's build side
join numbered t on t.conversion_id = p.conversion_id
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
