-- Metrica visits up to the run's cut-off.
select
    counter_id,
    visit_id,
    visit_at,
    client_id,
    lower(traffic_type) as traffic_type,
    utm_source,
    utm_medium,
    utm_campaign,
    purchase_ids
from metrica_visits
where visit_at <= {{ var('as_of_end') }}
