-- The raw path of every conversion: the customer's touches with
-- converted_at - lookback_days <= touch_at <= converted_at (exact seconds, both bounds
-- inclusive), ordered by (touch_at, touch_id), repeated channels kept.
select c.conversion_id, c.conversion_type, c.customer_id, c.converted_at, c.value,
           t.touch_id, t.touch_at, t.channel, t.campaign,
           row_number() over (partition by c.conversion_id order by t.touch_at, t.touch_id) as raw_position,
           lag(t.channel) over (partition by c.conversion_id order by t.touch_at, t.touch_id) as previous_channel
    from conversions c
    join touchpoints t
      on t.customer_id = c.customer_id
     and t.touch_at <= c.converted_at
     and t.touch_at >= c.converted_at - interval '{{ var('lookback_days') }} days'
    where c.conversion_type in ({{ var('conversion_types') }})
