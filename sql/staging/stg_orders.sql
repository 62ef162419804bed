-- Shopify orders up to the run's cut-off (by `Created at`), status as exported.
select
    order_key,
    email,
    phone,
    financial_status,
    created_at,
    cancelled_at,
    total,
    refunded_amount,
    accepts_marketing
from orders
where created_at <= {{ var('as_of_end') }}
