-- Identifier (`kind:value`) -> customer_id, for joins.
select kind || ':' || value as identifier, customer_id from identity_map
