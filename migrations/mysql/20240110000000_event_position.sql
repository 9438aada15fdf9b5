-- Stream positions in commit order (the design is in src/events/mod.rs). An event's
-- `event_id` is taken when its row is inserted, but transactions commit in any order, so
-- an id can become visible after higher ones. The tailers therefore number committed
-- events themselves: `seq` is given once, in the order the rows were found committed, by
-- one tailer at a time (the `event_sequence` row is the lock and the counter). Streams
-- resume by `seq`; a row still in flight or rolled back holds no position, so it delays
-- nobody.
ALTER TABLE `event`
  ADD COLUMN `seq` bigint DEFAULT NULL,
  ADD UNIQUE KEY `event_seq` (`seq`),
  ADD KEY `event_user_seq` (`user_id`, `seq`),
  DROP KEY `event_user`;

-- Every event committed so far keeps its id as its position (the ids clients hold stay
-- valid); later ones are numbered after the highest.
UPDATE `event` SET `seq` = `event_id`;

CREATE TABLE IF NOT EXISTS `event_sequence` (
  `id` int(11) NOT NULL,
  `last_seq` bigint NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

INSERT INTO `event_sequence` (`id`, `last_seq`) SELECT 1, COALESCE(MAX(`event_id`), 0) FROM `event`;
