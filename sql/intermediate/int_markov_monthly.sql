-- Markov credits per business month and channel: the month's attributed totals times
-- the channel's overall share, plus (unattributed) conversions as their own channel.
select t.conversion_type, t.month, m.channel,
       t.conversions * m.share as conversions, t.value * m.share as value
from int_markov_totals t
join int_attribution_markov m on m.conversion_type = t.conversion_type
where t.attributed
union all
select conversion_type, month, '(unattributed)', cast(conversions as double), value
from int_markov_totals
where not attributed
