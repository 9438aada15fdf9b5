-- Accounts for real use (issue 13). Additive: two nullable columns on `user` and new
-- tables; the original service neither reads nor writes any of them.

-- A random value that changes when every sign-in should end (password change or reset,
-- "sign out everywhere"): sessions and access tokens carry a fingerprint of it and of the
-- password hash. NULL for accounts that never used it, which keeps their sessions valid.
-- The name shown in chats beside the username (the handle).
ALTER TABLE `user`
  ADD COLUMN `security_stamp` varchar(32) DEFAULT NULL,
  ADD COLUMN `display_name` varchar(50) DEFAULT NULL;

-- Browser sessions, one row per signed-in (or CSRF-holding) browser. The key is the
-- SHA-256 of the cookie's value, so the table alone signs nobody in. `user_id`,
-- `user_agent`, `ip` and the times are there for the profile's list of sessions.
-- (Hashes are lower-case hex, so ascii_general_ci compares them exactly; a _bin collation
-- would make MySQL report the column as binary, which sqlx does not read as text.)
CREATE TABLE IF NOT EXISTS `browser_session` (
  `session_key` char(64) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
  `user_id` int(11) DEFAULT NULL,
  `data` text NOT NULL,
  `created_date_time` datetime(6) NOT NULL,
  `last_seen_date_time` datetime(6) NOT NULL,
  `expiry_date_time` datetime(6) NOT NULL,
  `user_agent` varchar(255) DEFAULT NULL,
  `ip` varchar(64) DEFAULT NULL,
  PRIMARY KEY (`session_key`),
  KEY `browser_session_user` (`user_id`),
  KEY `browser_session_expiry` (`expiry_date_time`),
  CONSTRAINT `browser_session_user_FK` FOREIGN KEY (`user_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Single-use links sent by mail: password resets and address checks. Only the SHA-256
-- of the link's secret is stored.
CREATE TABLE IF NOT EXISTS `account_token` (
  `token_hash` char(64) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
  `user_id` int(11) NOT NULL,
  `purpose` varchar(16) NOT NULL,
  `created_date_time` datetime(6) NOT NULL,
  `expires_date_time` datetime(6) NOT NULL,
  PRIMARY KEY (`token_hash`),
  KEY `account_token_user` (`user_id`, `purpose`),
  CONSTRAINT `account_token_user_FK` FOREIGN KEY (`user_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Accounts whose email address is not confirmed yet (REQUIRE_EMAIL_VERIFICATION); every
-- other account, including all made before, counts as confirmed.
CREATE TABLE IF NOT EXISTS `unverified_email` (
  `user_id` int(11) NOT NULL,
  `created_date_time` datetime(6) NOT NULL,
  PRIMARY KEY (`user_id`),
  CONSTRAINT `unverified_email_user_FK` FOREIGN KEY (`user_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Personal API tokens for scripts: shown once, stored as SHA-256, `read` or `read_write`.
CREATE TABLE IF NOT EXISTS `api_token` (
  `token_id` int(11) NOT NULL AUTO_INCREMENT,
  `user_id` int(11) NOT NULL,
  `name` varchar(50) NOT NULL,
  `token_hash` char(64) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
  `scope` varchar(16) NOT NULL,
  `created_date_time` datetime(6) NOT NULL,
  `expires_date_time` datetime(6) DEFAULT NULL,
  `last_used_date_time` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`token_id`),
  UNIQUE KEY `api_token_hash` (`token_hash`),
  KEY `api_token_user` (`user_id`),
  CONSTRAINT `api_token_user_FK` FOREIGN KEY (`user_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
