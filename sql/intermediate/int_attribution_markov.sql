-- Markov removal effects and shares per conversion type, solved exactly by
-- markov_removal_effects() (an absorbing chain as a linear system).
with solved as (
    select conversion_type,
           markov_removal_effects(string_to_array(path, ' > '),
                                  cast(conversions as double), cast(nulls as double)) as effects
    from attribution_paths
    group by conversion_type
),
rows_ as (
    select conversion_type, unnest(effects) as r from solved
)
select conversion_type,
       get_field(r, 'channel') as channel,
       get_field(r, 'removal_effect') as removal_effect,
       get_field(r, 'share') as share,
       get_field(r, 'p_conversion') as p_conversion
from rows_
