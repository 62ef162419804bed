-- Email/SMS message events up to the cut-off.
select channel, campaign_id, campaign_name, email, phone, event, event_at
from message_events
where event_at <= {{ var('as_of_end') }}
