-- Every (identifier, timestamp) of a loaded row that carries the identifier: the
-- evidence for a customer's latest email/phone and first-seen time.
select 'email:' || email as identifier, created_at as at, 'order' as origin from stg_orders where email is not null
union all select 'phone:' || phone, created_at, 'order' from stg_orders where phone is not null
union all select 'phone:' || caller_phone, call_at, 'call' from stg_calls where caller_phone is not null
union all select 'ym_client_id:' || ya_client_id, call_at, 'call' from stg_calls where ya_client_id is not null
union all select 'ga_client_id:' || ga_client_id, call_at, 'call' from stg_calls where ga_client_id is not null
union all select 'email:' || email, event_at, 'message' from stg_messages where email is not null
union all select 'phone:' || phone, event_at, 'message' from stg_messages where phone is not null
union all select 'email:' || email, updated_at, 'consent' from stg_consents where email is not null
union all select 'phone:' || phone, updated_at, 'consent' from stg_consents where phone is not null
union all select 'ym_client_id:' || client_id, visit_at, 'visit' from stg_visits where client_id is not null
union all select 'ga_client_id:' || user_pseudo_id, session_start, 'ga4_session' from stg_ga4_sessions
