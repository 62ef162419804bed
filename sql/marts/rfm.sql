-- RFM scores and segments (spec/marts.md): NTILE(5) with the spec's tie-breaking.
with base as (
    select customer_id,
           cast({{ var('as_of') }} - max(purchase_date) as bigint) as recency_days,
           count(*) as frequency,
           sum(value) as monetary
    from int_purchases
    group by customer_id
),
-- Ties break by customer_id, through its rank: each NTILE then sorts numbers, not text.
-- Recency (descending) and frequency each pack with the rank into one bigint, which
-- orders as the pair does (a rank is below 2^32, and neither a recency in days nor a
-- count reaches 2^31): recency_days desc (nulls first, as desc puts them), then
-- customer_id. At 1M customers (468k rows) the model took 0.79-1.11 s against
-- 0.90-1.19 s sorting the text id (six interleaved pairs; CPU 1.0-1.41 s against
-- 1.23-1.6 s), its Parquet identical.
ranked as (
    select *, cast(row_number() over (order by customer_id) as bigint) as customer_rank
    from base
),
scored as (
    select *,
           ntile(5) over (order by recency_days * -4294967296 + customer_rank nulls first) as r_score,
           ntile(5) over (order by frequency * 4294967296 + customer_rank) as f_score,
           ntile(5) over (order by monetary, customer_rank) as m_score
    from ranked
)
select customer_id, recency_days, frequency, monetary, r_score, f_score, m_score,
       -- One lookup of (r_score, f_score) as a two-digit number: DataFusion evaluates a
       -- CASE of literals against one value with a hash lookup, where 12 WHENs of
       -- ANDed comparisons took 180 ms at 1M customers (468k rows). As before, what no
       -- WHEN takes (r_score 1 or 2 with f_score 5) is cant_lose.
       case r_score * 10 + f_score
         when 51 then 'new_customers'
         when 52 then 'potential_loyalists'
         when 53 then 'potential_loyalists'
         when 54 then 'champions'
         when 55 then 'champions'
         when 41 then 'promising'
         when 42 then 'potential_loyalists'
         when 43 then 'potential_loyalists'
         when 44 then 'loyal_customers'
         when 45 then 'loyal_customers'
         when 31 then 'about_to_sleep'
         when 32 then 'about_to_sleep'
         when 33 then 'need_attention'
         when 34 then 'loyal_customers'
         when 35 then 'loyal_customers'
         when 21 then 'hibernating'
         when 22 then 'hibernating'
         when 23 then 'at_risk'
         when 24 then 'at_risk'
         when 11 then 'hibernating'
         when 12 then 'hibernating'
         when 13 then 'at_risk'
         when 14 then 'at_risk'
         else 'cant_lose'
       end as segment
from scored
