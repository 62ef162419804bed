-- The raw path of every conversion: the customer's touches with
-- converted_at - lookback_days <= touch_at <= converted_at (exact seconds, both bounds
-- inclusive), ordered by (touch_at, touch_id), repeated channels kept.
--
-- The window's start is computed once per conversion (the join's build side), so the
-- join's filter compares timestamps: with the interval subtracted inside the join
-- condition, it was evaluated on every candidate (customer, touch) pair, three times
-- as many as the matches, and took 80% of the join's time.
with converting as (
    select conversion_id, conversion_type, customer_id, converted_at, value,
           converted_at - interval '{{ var('lookback_days') }} days' as window_start
    from conversions
    where conversion_type in ({{ var('conversion_types') }})
)
select c.conversion_id, c.conversion_type, c.customer_id, c.converted_at, c.value,
       t.touch_id, t.touch_at, t.channel, t.campaign,
       row_number() over (partition by c.conversion_id order by t.touch_at, t.touch_id) as raw_position
from converting c
join touchpoints t
  on t.customer_id = c.customer_id
 and t.touch_at <= c.converted_at
 and t.touch_at >= c.window_start
