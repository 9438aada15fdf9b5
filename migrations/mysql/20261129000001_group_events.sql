-- Group events fan out on read: one `event` row per group event instead of one per
-- member (src/events/mod.rs, "Groups"). Such a row has `user_id` 0 (no user has that id)
-- and names the group; every process routes it to the streams of that group's members,
-- but `except_user_id` (the member typing hears no typing of their own). Additive: the
-- rows written before keep their meaning.
ALTER TABLE `event`
  ADD COLUMN `group_chat_id` int(11) DEFAULT NULL,
  ADD COLUMN `except_user_id` int(11) DEFAULT NULL,
  ADD KEY `event_group_seq` (`group_chat_id`, `seq`);
