-- Every identifier with its customer: connected components of the identity graph,
-- computed natively by connected_components(); customer_id is the first 16 hex
-- characters of SHA-256 of the component's smallest identifier (`kind:value`, bytes).
with components as (
    select unnest(connected_components(a, b)) as c
    from int_identity_edges
),
nodes as (
    select get_field(c, 'node') as node, get_field(c, 'component') as component
    from components
)
select
    split_part(node, ':', 1) as kind,
    substr(node, strpos(node, ':') + 1) as value,
    left(sha256_hex(component), 16) as customer_id
from nodes
