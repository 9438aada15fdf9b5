-- Per-chat mute (additive: the original service never reads it). A muted chat sends no
-- desktop notifications and is left out of the unread count in the tab title.
-- `conversation` is the page's key of the chat: `d-<other user id>` or `g-<group id>`.
CREATE TABLE IF NOT EXISTS chat_mute (
  user_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE,
  conversation VARCHAR(24) NOT NULL,
  PRIMARY KEY (user_id, conversation)
) WITHOUT ROWID;
