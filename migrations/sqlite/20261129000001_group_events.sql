-- Group events fan out on read: one `event` row per group event instead of one per
-- member (src/events/mod.rs, "Groups"). Such a row has `user_id` 0 (no user has that id)
-- and names the group; every process routes it to the streams of that group's members,
-- but `except_user_id` (the member typing hears no typing of their own).
ALTER TABLE event ADD COLUMN group_chat_id INTEGER;
ALTER TABLE event ADD COLUMN except_user_id INTEGER;
CREATE INDEX IF NOT EXISTS event_group ON event (group_chat_id, event_id);
