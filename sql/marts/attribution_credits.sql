-- Credits of the six heuristic models (spec/marts.md): one row per (conversion, touch
-- of its path, model), zero credits included; an empty path gives one
-- `(unattributed)` row per model with credit 1.
-- Every per-path figure (length, time-decay weight, last non-direct touch) is already
-- on each touch of int_attribution_paths, and so are the empty paths, so this model
-- only multiplies rows: no join, no sort. The written order is the paths' order
-- (conversion_id, position), each touch's six models in the order of the array below.
-- Each touch's six credits are computed once, as six plain columns of the touch, and
-- unnested beside the model names (two lists of six, zipped): at 1M customers one CASE
-- choosing a model's formula by its name took 14.8 s of CPU over the 55M unnested rows.
with weights as (
    -- One row per model for every touch, in the paths' own order (unnest keeps it).
    -- An empty path (path_length 0): its one `(unattributed)` row takes the whole credit.
    select *,
           unnest(make_array('first_touch', 'last_non_direct', 'last_touch', 'linear',
                             'position_based', 'time_decay')) as model,
           unnest(make_array(
               case when path_length = 0 or position = 1 then 1.0 else 0.0 end,
               case when path_length = 0 or is_last_non_direct then 1.0 else 0.0 end,
               case when path_length = 0 or position = path_length then 1.0 else 0.0 end,
               case when path_length = 0 then 1.0 else 1.0 / path_length end,
               case when path_length <= 1 then 1.0
                    when path_length = 2 then 0.5
                    when position = 1 then {{ var('position_first') }}
                    when position = path_length then {{ var('position_last') }}
                    else (1.0 - {{ var('position_first') }} - {{ var('position_last') }}) / (path_length - 2)
               end,
               case when path_length = 0 then 1.0 else decay_weight end)) as credit
    from int_attribution_paths
)
select conversion_id, conversion_type, customer_id, converted_at, model, touch_id,
       position, path_length, channel, campaign, credit, credit * value as value_credit
from weights
