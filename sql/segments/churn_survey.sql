-- `churned` customers with 2 or more purchases.
select l.customer_id, c.orders, l.recency_days
from customer_lifecycle l
join customers c on c.customer_id = l.customer_id
where l.stage = 'churned' and c.orders >= 2
