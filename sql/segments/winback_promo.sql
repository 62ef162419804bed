-- `lapsing` and `churned` customers. Published with `require_consent`: only contacts
-- whose latest statement for the channel is a grant.
select l.customer_id, l.stage, l.recency_days
from customer_lifecycle l
where l.stage in ('lapsing', 'churned')
