-- Conversions and value per (model, conversion type, channel) for all seven models,
-- over all conversions up to as_of. Rows whose sums are both 0 are left out.
select model, conversion_type, channel, conversions, value from (
    select model, conversion_type, channel,
           sum(credit) as conversions, sum(value_credit) as value
    from attribution_credits
    group by model, conversion_type, channel
    union all
    select 'markov', conversion_type, channel, sum(conversions), sum(value)
    from int_markov_monthly
    group by conversion_type, channel
) a
where conversions <> 0 or value <> 0
