-- The channel-grouping rules of spec/marts.md, from the editable seed
-- sql/seeds/channel_rules.csv: `|`-separated lists, `NULL` in a list matches a
-- missing value, `*` everywhere makes the catch-all rule.
select
    priority,
    channel,
    case when traffic_types is null or traffic_types = '*' then null
         else string_to_array(lower(traffic_types), '|') end as traffic_types,
    case when sources is null or sources = '*' then null
         else string_to_array(lower(sources), '|') end as sources,
    case when mediums is null or mediums = '*' then null
         else string_to_array(lower(mediums), '|') end as mediums,
    coalesce(traffic_types = '*', false) as match_all
from channel_rules
