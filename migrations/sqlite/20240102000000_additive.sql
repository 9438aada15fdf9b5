-- The same additive step as MySQL's. SQLite does not enforce VARCHAR lengths and keeps
-- fractional seconds in its text dates, so only the new columns, indexes and tables remain.
ALTER TABLE message ADD COLUMN client_key VARCHAR(64);
CREATE UNIQUE INDEX IF NOT EXISTS message_sender_client_key ON message (sender_id, client_key);
CREATE INDEX IF NOT EXISTS message_direct_pair ON message (sender_id, reciever_id, message_id);
CREATE INDEX IF NOT EXISTS message_group_history ON message (group_chat_id, message_id);

ALTER TABLE group_chat ADD COLUMN creator_id INTEGER;
ALTER TABLE group_chat ADD COLUMN created_date_time DATETIME;
ALTER TABLE group_chat_member ADD COLUMN last_read_message_id INTEGER NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS event (
  event_id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id INTEGER NOT NULL,
  kind VARCHAR(32) NOT NULL,
  payload TEXT NOT NULL,
  created_date_time DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS event_user ON event (user_id, event_id);
CREATE INDEX IF NOT EXISTS event_created ON event (created_date_time);

CREATE TABLE IF NOT EXISTS presence (
  user_id INTEGER NOT NULL,
  process_id VARCHAR(64) NOT NULL,
  expires_date_time DATETIME NOT NULL,
  PRIMARY KEY (user_id, process_id)
);
CREATE INDEX IF NOT EXISTS presence_expires ON presence (expires_date_time);
