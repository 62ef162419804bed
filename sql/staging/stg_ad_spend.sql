-- Ad spend up to `as_of` (Direct and Google Ads rows carry their fixed source/medium).
select date, platform, source, medium, campaign, cost
from ad_spend
where date <= {{ var('as_of') }}
