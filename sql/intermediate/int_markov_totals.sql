-- Per conversion type and business month: conversions with a non-empty path (split
-- by Markov shares) and without one (credited to (unattributed)).
select c.conversion_type,
       business_month(c.converted_at) as month,
       (p.conversion_id is not null) as attributed,
       count(*) as conversions,
       sum(c.value) as value
from conversions c
left join (select distinct conversion_id from int_conversion_touches) p on p.conversion_id = c.conversion_id
where c.conversion_type in ({{ var('conversion_types') }})
group by c.conversion_type, business_month(c.converted_at), (p.conversion_id is not null)
