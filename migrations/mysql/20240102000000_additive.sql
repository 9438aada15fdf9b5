-- Additive only: wider types, new nullable or defaulted columns, new indexes and tables.
-- The original service still runs against a database migrated this far.

-- Two statuses in the same second must both be recorded (the original's duplicate-key bug).
ALTER TABLE `friendship_status` MODIFY `specified_date_time` datetime(6) NOT NULL;

-- Messages: up to 2,000 characters; sub-second times; an idempotency key per send.
ALTER TABLE `message`
  MODIFY `content` varchar(2000) NOT NULL,
  MODIFY `created_date_time` datetime(6) NOT NULL,
  MODIFY `last_edited_date_time` datetime(6) DEFAULT NULL,
  ADD COLUMN `client_key` varchar(64) DEFAULT NULL,
  ADD UNIQUE KEY `message_sender_client_key` (`sender_id`, `client_key`),
  ADD KEY `message_direct_pair` (`sender_id`, `reciever_id`, `message_id`),
  ADD KEY `message_group_history` (`group_chat_id`, `message_id`);

-- Group chats: who made one, and each member's read marker.
ALTER TABLE `group_chat`
  ADD COLUMN `creator_id` int(11) DEFAULT NULL,
  ADD COLUMN `created_date_time` datetime(6) DEFAULT NULL;
ALTER TABLE `group_chat_member`
  ADD COLUMN `last_read_message_id` int(11) NOT NULL DEFAULT 0;

-- The outbox of live events: one row per recipient, tailed by every process.
CREATE TABLE IF NOT EXISTS `event` (
  `event_id` bigint NOT NULL AUTO_INCREMENT,
  `user_id` int(11) NOT NULL,
  `kind` varchar(32) NOT NULL,
  `payload` text NOT NULL,
  `created_date_time` datetime(6) NOT NULL,
  PRIMARY KEY (`event_id`),
  KEY `event_user` (`user_id`, `event_id`),
  KEY `event_created` (`created_date_time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Who is online on which process; rows expire unless their process keeps renewing them.
CREATE TABLE IF NOT EXISTS `presence` (
  `user_id` int(11) NOT NULL,
  `process_id` varchar(64) NOT NULL,
  `expires_date_time` datetime(6) NOT NULL,
  PRIMARY KEY (`user_id`, `process_id`),
  KEY `presence_expires` (`expires_date_time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
