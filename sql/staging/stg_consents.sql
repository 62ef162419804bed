-- Consent statements from the CRM up to the cut-off.
select channel, email, phone, status, updated_at
from consents
where updated_at <= {{ var('as_of_end') }}
