-- GA4 sessions (built at ingest from events) up to the run's cut-off.
select
    user_pseudo_id,
    ga_session_id,
    session_start,
    source,
    medium,
    campaign,
    purchase_ids
from ga4_sessions
where session_start <= {{ var('as_of_end') }}
