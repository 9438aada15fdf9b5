-- The original service's schema (alembic head 10b24a318e56), created only where missing:
-- on a database the original made, this migration changes nothing and is recorded as applied.
CREATE TABLE IF NOT EXISTS `user` (
  `user_id` int(11) NOT NULL AUTO_INCREMENT,
  `username` varchar(25) NOT NULL,
  `first_name` varchar(30) DEFAULT NULL,
  `last_name` varchar(30) DEFAULT NULL,
  `birthdate` datetime DEFAULT NULL,
  `password_hash` varchar(100) NOT NULL,
  `email` varchar(255) NOT NULL,
  PRIMARY KEY (`user_id`),
  UNIQUE KEY `email` (`email`),
  UNIQUE KEY `username` (`username`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `friendship_status_code` (
  `status_code_id` char(1) NOT NULL,
  `name` varchar(20) NOT NULL,
  PRIMARY KEY (`status_code_id`,`name`),
  UNIQUE KEY `status_code_id` (`status_code_id`),
  UNIQUE KEY `name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `friendship` (
  `requester_id` int(11) NOT NULL,
  `addressee_id` int(11) NOT NULL,
  `created_date_time` datetime NOT NULL,
  PRIMARY KEY (`requester_id`,`addressee_id`),
  KEY `friendship_addressee_id_FK` (`addressee_id`),
  CONSTRAINT `friendship_addressee_id_FK` FOREIGN KEY (`addressee_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT `friendship_requester_id_FK` FOREIGN KEY (`requester_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `friendship_status` (
  `requester_id` int(11) NOT NULL,
  `addressee_id` int(11) NOT NULL,
  `specified_date_time` datetime NOT NULL,
  `status_code_id` char(1) NOT NULL DEFAULT 'R',
  `specifier_id` int(11) NOT NULL,
  PRIMARY KEY (`requester_id`,`addressee_id`,`specified_date_time`),
  KEY `friendship_status_status_code_id_FK` (`status_code_id`),
  KEY `friendship_status_specifier_id_FK` (`specifier_id`),
  CONSTRAINT `friendship_status_friend_id_FK` FOREIGN KEY (`requester_id`, `addressee_id`) REFERENCES `friendship` (`requester_id`, `addressee_id`) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT `friendship_status_specifier_id_FK` FOREIGN KEY (`specifier_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT `friendship_status_status_code_id_FK` FOREIGN KEY (`status_code_id`) REFERENCES `friendship_status_code` (`status_code_id`) ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `group_chat` (
  `group_chat_id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(20) NOT NULL,
  PRIMARY KEY (`group_chat_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `group_chat_member` (
  `group_chat_id` int(11) NOT NULL,
  `member_id` int(11) NOT NULL,
  PRIMARY KEY (`group_chat_id`,`member_id`),
  KEY `group_chat_member_member_id_FK` (`member_id`),
  CONSTRAINT `group_chat_member_group_chat_id_FK` FOREIGN KEY (`group_chat_id`) REFERENCES `group_chat` (`group_chat_id`) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT `group_chat_member_member_id_FK` FOREIGN KEY (`member_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `message` (
  `message_id` int(11) NOT NULL AUTO_INCREMENT,
  `sender_id` int(11) DEFAULT NULL,
  `reciever_id` int(11) DEFAULT NULL,
  `content` varchar(300) NOT NULL,
  `created_date_time` datetime NOT NULL,
  `last_edited_date_time` datetime DEFAULT NULL,
  `group_chat_id` int(11) DEFAULT NULL,
  `seen` tinyint(1) DEFAULT 0,
  PRIMARY KEY (`message_id`),
  KEY `message_sender_id_FK` (`sender_id`),
  KEY `message_reciever_id_FK` (`reciever_id`),
  KEY `message_group_chat_id_FK` (`group_chat_id`),
  CONSTRAINT `message_group_chat_id_FK` FOREIGN KEY (`group_chat_id`) REFERENCES `group_chat` (`group_chat_id`) ON DELETE SET NULL ON UPDATE CASCADE,
  CONSTRAINT `message_reciever_id_FK` FOREIGN KEY (`reciever_id`) REFERENCES `user` (`user_id`) ON DELETE SET NULL ON UPDATE CASCADE,
  CONSTRAINT `message_sender_id_FK` FOREIGN KEY (`sender_id`) REFERENCES `user` (`user_id`) ON DELETE SET NULL ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

INSERT IGNORE INTO `friendship_status_code` (`status_code_id`, `name`) VALUES
  ('R', 'REQUESTED'), ('A', 'ACCEPTED'), ('D', 'DECLINED'), ('B', 'BLOCKED');
