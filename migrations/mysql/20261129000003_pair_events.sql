-- A direct chat's events are one `event` row for both sides instead of one per side: a
-- message, an edit, a delete, a reaction, a read marker. Such a row has `user_id` one side
-- and `also_user_id` the other; a resuming stream reads its own rows, the rows that name it
-- as `also_user_id`, and its groups' (src/store/events.rs). Additive: the rows written
-- before keep their meaning.
ALTER TABLE `event`
  ADD COLUMN `also_user_id` int(11) DEFAULT NULL,
  ADD KEY `event_also_seq` (`also_user_id`, `seq`);
