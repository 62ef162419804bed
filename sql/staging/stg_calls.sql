-- Calltouch calls up to the run's cut-off.
select
    call_id,
    call_at,
    caller_phone,
    target_call,
    source,
    medium,
    utm_campaign,
    ya_client_id,
    ga_client_id
from calls
where call_at <= {{ var('as_of_end') }}
