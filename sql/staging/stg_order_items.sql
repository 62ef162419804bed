-- Shopify line items of orders up to the cut-off.
select order_key, line_number, sku, name, quantity, price
from order_items
where created_at <= {{ var('as_of_end') }}
