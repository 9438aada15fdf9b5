-- Richer messages: replies, reactions, mentions and the search index. Additive only: the
-- original service neither reads nor writes any of it.

-- The message this one answers. No foreign key: the original may be deleted, and the
-- reply then shows "message deleted" instead of losing that it was a reply.
ALTER TABLE `message` ADD COLUMN `reply_to_message_id` int(11) DEFAULT NULL;

-- One row per (message, emoji, user). The emoji column compares bytes: the table's
-- general_ci collation takes every emoji for the same character.
CREATE TABLE IF NOT EXISTS `message_reaction` (
  `message_id` int(11) NOT NULL,
  `emoji` varchar(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `user_id` int(11) NOT NULL,
  `created_date_time` datetime(6) NOT NULL,
  PRIMARY KEY (`message_id`, `emoji`, `user_id`),
  KEY `message_reaction_user` (`user_id`),
  CONSTRAINT `message_reaction_message_FK` FOREIGN KEY (`message_id`) REFERENCES `message` (`message_id`) ON DELETE CASCADE,
  CONSTRAINT `message_reaction_user_FK` FOREIGN KEY (`user_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Who a group message mentions; (user, message) finds a user's mentions.
CREATE TABLE IF NOT EXISTS `message_mention` (
  `message_id` int(11) NOT NULL,
  `user_id` int(11) NOT NULL,
  PRIMARY KEY (`message_id`, `user_id`),
  KEY `message_mention_user` (`user_id`, `message_id`),
  CONSTRAINT `message_mention_message_FK` FOREIGN KEY (`message_id`) REFERENCES `message` (`message_id`) ON DELETE CASCADE,
  CONSTRAINT `message_mention_user_FK` FOREIGN KEY (`user_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- The search index (src/store/search.rs): one posting per (term hash, reader, message).
-- The reader is a direct message's sender and its recipient, or minus a group's id; the
-- message's sender rides along for the "from" filter.
CREATE TABLE IF NOT EXISTS `message_search` (
  `term` bigint NOT NULL,
  `owner_id` int(11) NOT NULL,
  `message_id` int(11) NOT NULL,
  `sender_id` int(11) DEFAULT NULL,
  PRIMARY KEY (`term`, `owner_id`, `message_id`),
  KEY `message_search_message` (`message_id`),
  CONSTRAINT `message_search_message_FK` FOREIGN KEY (`message_id`) REFERENCES `message` (`message_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Messages written before this migration are indexed in the background, in batches
-- (store::search::backfill): `done_to` is how far it got, `up_to` the last id to do.
CREATE TABLE IF NOT EXISTS `search_backfill` (
  `id` int(11) NOT NULL,
  `done_to` int(11) NOT NULL,
  `up_to` int(11) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
INSERT IGNORE INTO `search_backfill` (`id`, `done_to`, `up_to`) SELECT 1, 0, COALESCE(MAX(`message_id`), 0) FROM `message`;
