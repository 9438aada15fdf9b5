-- The same additive step as MySQL's: replies, reactions, mentions and the search index.
ALTER TABLE message ADD COLUMN reply_to_message_id INTEGER;

CREATE TABLE IF NOT EXISTS message_reaction (
  message_id INTEGER NOT NULL REFERENCES message (message_id) ON DELETE CASCADE,
  emoji VARCHAR(32) NOT NULL,
  user_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE,
  created_date_time DATETIME NOT NULL,
  PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_reaction_user ON message_reaction (user_id);

CREATE TABLE IF NOT EXISTS message_mention (
  message_id INTEGER NOT NULL REFERENCES message (message_id) ON DELETE CASCADE,
  user_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE,
  PRIMARY KEY (message_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_mention_user ON message_mention (user_id, message_id);

CREATE TABLE IF NOT EXISTS message_search (
  term BIGINT NOT NULL,
  owner_id INTEGER NOT NULL,
  message_id INTEGER NOT NULL REFERENCES message (message_id) ON DELETE CASCADE,
  sender_id INTEGER,
  PRIMARY KEY (term, owner_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_search_message ON message_search (message_id);

CREATE TABLE IF NOT EXISTS search_backfill (
  id INTEGER NOT NULL PRIMARY KEY,
  done_to INTEGER NOT NULL,
  up_to INTEGER NOT NULL
);
INSERT OR IGNORE INTO search_backfill (id, done_to, up_to) SELECT 1, 0, COALESCE(MAX(message_id), 0) FROM message;
