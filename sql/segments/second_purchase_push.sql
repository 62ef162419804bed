-- Customers with exactly one purchase, made 14 to 60 days ago.
select customer_id, business_date(first_order_at) as first_order_date
from customers
where orders = 1
  and business_date(first_order_at) between {{ var('as_of') }} - interval '60' day
                                        and {{ var('as_of') }} - interval '14' day
