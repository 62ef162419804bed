-- First-to-second purchase conversion per cohort month.
with firsts as (
    select p1.customer_id, p1.purchase_month as cohort_month, p1.converted_at as first_at,
           p2.converted_at as second_at
    from int_purchases p1
    left join int_purchases p2 on p2.customer_id = p1.customer_id and p2.purchase_number = 2
    where p1.purchase_number = 1
),
gaps as (
    select *,
           (cast(date_part('epoch', second_at) as double) - cast(date_part('epoch', first_at) as double)) as gap_s
    from firsts
)
select cohort_month,
       count(*) as first_buyers,
       count(*) filter (where gap_s <= 30 * 86400) as repeat_buyers_30d,
       count(*) filter (where gap_s <= 90 * 86400) as repeat_buyers_90d,
       count(second_at) as repeat_buyers,
       cast(count(second_at) as double) / count(*) as repeat_rate,
       median(gap_s / 86400.0) as median_days_to_second
from gaps
group by cohort_month
