-- RFM `champions` and `loyal_customers`, for ad audiences (hashed identifiers only).
select customer_id, segment as rfm_segment
from rfm
where segment in ('champions', 'loyal_customers')
