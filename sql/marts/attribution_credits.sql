-- Credits of the six heuristic models (spec/marts.md): one row per (conversion, touch
-- of its path, model), zero credits included; an empty path gives one
-- `(unattributed)` row per model with credit 1.
-- Every per-path figure (length, time-decay weight, last non-direct touch) is already
-- on each touch of int_attribution_paths, and so are the empty paths, so this model
-- only multiplies rows: no join, no sort. The written order is the paths' order
-- (conversion_id, position), each touch's six models in the order of the array below.
with expanded as (
    -- One row per model for every touch, in the paths' own order (unnest keeps it).
    select *, unnest(make_array('first_touch', 'last_non_direct', 'last_touch', 'linear',
                                'position_based', 'time_decay')) as model
    from int_attribution_paths
),
weights as (
    select *,
           case
             -- an empty path: its one `(unattributed)` row takes the whole credit
             when path_length = 0 then 1.0
             when model = 'first_touch' then case when position = 1 then 1.0 else 0.0 end
             when model = 'last_touch' then case when position = path_length then 1.0 else 0.0 end
             when model = 'last_non_direct' then case when is_last_non_direct then 1.0 else 0.0 end
             when model = 'linear' then 1.0 / path_length
             when model = 'time_decay' then decay_weight
             when model = 'position_based' then
                  case when path_length = 1 then 1.0
                       when path_length = 2 then 0.5
                       when position = 1 then {{ var('position_first') }}
                       when position = path_length then {{ var('position_last') }}
                       else (1.0 - {{ var('position_first') }} - {{ var('position_last') }}) / (path_length - 2)
                  end
           end as credit
    from expanded
)
select conversion_id, conversion_type, customer_id, converted_at, model, touch_id,
       position, path_length, channel, campaign, credit, credit * value as value_credit
from weights
