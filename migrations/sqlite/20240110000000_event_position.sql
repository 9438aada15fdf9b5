-- The same step as MySQL's, with nothing to do: SQLite has one writer at a time, and the
-- id of an event row is taken inside that writer's transaction, so ids become visible in
-- the order they were taken and a rolled-back id is reused. `event_id` is already the
-- commit-ordered stream position that MySQL needs the `seq` column for.
SELECT 1;
