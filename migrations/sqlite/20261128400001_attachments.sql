-- Files attached to messages: the same table as MySQL's (see there for the columns).
CREATE TABLE IF NOT EXISTS attachment (
  attachment_id INTEGER PRIMARY KEY AUTOINCREMENT,
  public_id CHAR(32) NOT NULL,
  uploader_id INTEGER NOT NULL,
  message_id INTEGER,
  position SMALLINT NOT NULL DEFAULT 0,
  name VARCHAR(255) NOT NULL,
  content_type VARCHAR(127) NOT NULL,
  kind VARCHAR(8) NOT NULL,
  size BIGINT NOT NULL,
  width INTEGER,
  height INTEGER,
  thumbnail_type VARCHAR(32),
  created_date_time DATETIME NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS attachment_public_id ON attachment (public_id);
CREATE INDEX IF NOT EXISTS attachment_message ON attachment (message_id, position);
CREATE INDEX IF NOT EXISTS attachment_unsent ON attachment (created_date_time);
