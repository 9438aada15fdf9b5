-- Accounts an operator disabled or signed out everywhere (`messenger admin`). Additive: the
-- original service never reads it. A row exists only for an account an operator acted on.
-- disabled_at: set while the account is disabled (no sign-in, every credential refused).
-- signed_out_at: Unix seconds; bearer tokens issued up to that second are refused, also
-- after the account is enabled again.
CREATE TABLE IF NOT EXISTS `account_access` (
  `user_id` int(11) NOT NULL,
  `disabled_at` datetime(6) DEFAULT NULL,
  `signed_out_at` bigint NOT NULL,
  PRIMARY KEY (`user_id`),
  CONSTRAINT `account_access_user_FK` FOREIGN KEY (`user_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
