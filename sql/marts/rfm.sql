-- RFM scores and segments (spec/marts.md): NTILE(5) with the spec's tie-breaking.
with base as (
    select customer_id,
           cast({{ var('as_of') }} - max(purchase_date) as bigint) as recency_days,
           count(*) as frequency,
           sum(value) as monetary
    from int_purchases
    group by customer_id
),
scored as (
    select *,
           ntile(5) over (order by recency_days desc, customer_id) as r_score,
           ntile(5) over (order by frequency, customer_id) as f_score,
           ntile(5) over (order by monetary, customer_id) as m_score
    from base
)
select customer_id, recency_days, frequency, monetary, r_score, f_score, m_score,
       case
         when r_score = 5 and f_score = 1 then 'new_customers'
         when r_score = 5 and f_score in (2, 3) then 'potential_loyalists'
         when r_score = 5 then 'champions'
         when r_score = 4 and f_score = 1 then 'promising'
         when r_score = 4 and f_score in (2, 3) then 'potential_loyalists'
         when r_score = 4 then 'loyal_customers'
         when r_score = 3 and f_score in (1, 2) then 'about_to_sleep'
         when r_score = 3 and f_score = 3 then 'need_attention'
         when r_score = 3 then 'loyal_customers'
         when f_score in (1, 2) then 'hibernating'
         when f_score in (3, 4) then 'at_risk'
         else 'cant_lose'
       end as segment
from scored
