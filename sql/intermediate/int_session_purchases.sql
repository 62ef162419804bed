-- Web sessions (Metrica visits and GA4 sessions) with each order key in their purchase
-- ids, and the session's client identifier.
select 'ym_client_id:' || client_id as identifier, visit_at as session_at, order_key
from (select client_id, visit_at, unnest(purchase_ids) as order_key from stg_visits) v
where client_id is not null and order_key is not null
union all
select 'ga_client_id:' || user_pseudo_id, session_start, order_key
from (select user_pseudo_id, session_start, unnest(purchase_ids) as order_key from stg_ga4_sessions) g
where user_pseudo_id is not null and order_key is not null
