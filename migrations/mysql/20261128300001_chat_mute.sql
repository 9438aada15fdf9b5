-- Per-chat mute (additive: the original service never reads it). A muted chat sends no
-- desktop notifications and is left out of the unread count in the tab title.
-- `conversation` is the page's key of the chat: `d-<other user id>` or `g-<group id>`.
-- (The table's own character set: sqlx reads a `_bin` collation's column as bytes.)
CREATE TABLE IF NOT EXISTS chat_mute (
  user_id INT(11) NOT NULL,
  conversation VARCHAR(24) NOT NULL,
  PRIMARY KEY (user_id, conversation),
  CONSTRAINT chat_mute_user_id_FK FOREIGN KEY (user_id) REFERENCES `user` (user_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
