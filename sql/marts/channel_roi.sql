-- Spend and return per business month, channel, model and conversion type
-- (spec/marts.md, channel_roi). Ratios are NULL where their denominator is 0.
with spend as (
    select cast(date_trunc('month', s.date) as date) as month, m.channel, sum(s.cost) as cost
    from stg_ad_spend s
    join int_channel_map m
      on m.traffic_type_key = ''
     and m.source_key = coalesce(lower(s.source), '')
     and m.medium_key = coalesce(lower(s.medium), '')
    group by cast(date_trunc('month', s.date) as date), m.channel
),
credited as (
    select business_month(converted_at) as month, model, conversion_type, channel,
           sum(credit) as conversions, sum(value_credit) as value
    from attribution_credits
    group by business_month(converted_at), model, conversion_type, channel
    union all
    select month, 'markov', conversion_type, channel, sum(conversions), sum(value)
    from int_markov_monthly
    group by month, conversion_type, channel
),
pairs as (
    select month, channel from spend
    union
    select month, channel from credited where conversions <> 0 or value <> 0
),
grid as (
    select p.month, p.channel, m.model, t.conversion_type
    from pairs p
    cross join (values ('first_touch'), ('last_touch'), ('last_non_direct'), ('linear'),
                       ('position_based'), ('time_decay'), ('markov')) as m(model)
    cross join (select unnest(make_array({{ var('conversion_types') }})) as conversion_type) t
),
joined as (
    select g.month, g.channel, g.model, g.conversion_type,
           coalesce(s.cost, 0) as cost,
           coalesce(c.conversions, 0) as conversions,
           coalesce(c.value, 0) as value
    from grid g
    left join spend s on s.month = g.month and s.channel = g.channel
    left join credited c on c.month = g.month and c.channel = g.channel
                        and c.model = g.model and c.conversion_type = g.conversion_type
)
select month, channel, model, conversion_type, cost, conversions, value,
       case when conversion_type = 'order' then cost / nullif(conversions, 0) end as cpa,
       case when conversion_type = 'order' then value / nullif(cost, 0) end as roas,
       case when conversion_type = 'order' then (value - cost) / nullif(cost, 0) end as romi,
       case when conversion_type = 'order' then cost / nullif(value, 0) end as drr,
       case when conversion_type = 'lead' then cost / nullif(conversions, 0) end as cpl
from joined
