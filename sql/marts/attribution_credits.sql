-- Credits of the six heuristic models (spec/marts.md): one row per (conversion, touch
-- of its path, model), zero credits included; an empty path gives one
-- `(unattributed)` row per model with credit 1.
-- Every per-path figure (length, time-decay weight, last non-direct touch) is already
-- on each touch of int_attribution_paths, so this model only multiplies rows: no join
-- of a path with its own totals.
with models as (
    select * from (values ('first_touch'), ('last_touch'), ('last_non_direct'), ('linear'),
                          ('position_based'), ('time_decay')) as m(model)
),
weights as (
    select p.*, m.model,
           case m.model
             when 'first_touch' then case when position = 1 then 1.0 else 0.0 end
             when 'last_touch' then case when position = path_length then 1.0 else 0.0 end
             when 'last_non_direct' then case when is_last_non_direct then 1.0 else 0.0 end
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
    from int_attribution_paths p
    cross join models m
),
-- Conversions with an empty path: the build side of this anti join is the paths'
-- first touches, one short row per attributed conversion.
unattributed as (
    select c.conversion_id, c.conversion_type, c.customer_id, c.converted_at, m.model,
           cast(null as varchar) as touch_id, cast(null as bigint) as position,
           cast(0 as bigint) as path_length, '(unattributed)' as channel,
           cast(null as varchar) as campaign, 1.0 as credit, c.value as value_credit
    from conversions c
    cross join models m
    where c.conversion_type in ({{ var('conversion_types') }})
      and not exists (select 1 from int_attribution_paths a
                      where a.conversion_id = c.conversion_id and a.position = 1)
)
select conversion_id, conversion_type, customer_id, converted_at, model, touch_id,
       position, path_length, channel, campaign, credit, credit * value as value_credit
from weights
union all
select * from unattributed
