-- Credits of the six heuristic models (spec/marts.md): one row per (conversion, touch
-- of its path, model), zero credits included; an empty path gives one
-- `(unattributed)` row per model with credit 1.
-- Per-conversion figures come from a grouped aggregate joined back, not from
-- whole-partition windows (those gather a partition into one batch that cannot spill).
with decayed as (
    select *,
           power(2.0, -(cast(date_part('epoch', converted_at) as double) - cast(date_part('epoch', touch_at) as double))
                 / ({{ var('half_life_days') }} * 86400.0)) as decay
    from int_attribution_paths
),
per_conversion as (
    select conversion_id,
           max(case when channel not in ('Direct', 'Internal') then position end) as last_non_direct_position,
           sum(decay) as decay_total
    from decayed
    group by conversion_id
),
w as (
    select d.*, c.last_non_direct_position, d.decay / c.decay_total as decay_weight
    from decayed d
    join per_conversion c on c.conversion_id = d.conversion_id
),
weights as (
    select w.*, m.model,
           case m.model
             when 'first_touch' then case when position = 1 then 1.0 else 0.0 end
             when 'last_touch' then case when position = path_length then 1.0 else 0.0 end
             when 'last_non_direct' then
                  case when position = coalesce(last_non_direct_position, path_length) then 1.0 else 0.0 end
             when 'linear' then 1.0 / path_length
             when 'position_based' then
                  case when path_length = 1 then 1.0
                       when path_length = 2 then 0.5
                       when position = 1 then {{ var('position_first') }}
                       when position = path_length then {{ var('position_last') }}
                       else (1.0 - {{ var('position_first') }} - {{ var('position_last') }}) / (path_length - 2)
                  end
             when 'time_decay' then decay_weight
           end as credit
    from w
    cross join (values ('first_touch'), ('last_touch'), ('last_non_direct'), ('linear'),
                       ('position_based'), ('time_decay')) as m(model)
),
unattributed as (
    select c.conversion_id, c.conversion_type, c.customer_id, c.converted_at, m.model,
           cast(null as varchar) as touch_id, cast(null as bigint) as position,
           cast(0 as bigint) as path_length, '(unattributed)' as channel,
           cast(null as varchar) as campaign, 1.0 as credit, c.value as value_credit
    from conversions c
    cross join (values ('first_touch'), ('last_touch'), ('last_non_direct'), ('linear'),
                       ('position_based'), ('time_decay')) as m(model)
    where c.conversion_type in ({{ var('conversion_types') }})
      and not exists (select 1 from int_attribution_paths a where a.conversion_id = c.conversion_id)
)
select conversion_id, conversion_type, customer_id, converted_at, model, touch_id,
       position, path_length, channel, campaign, credit, credit * value as value_credit
from weights
union all
select * from unattributed
