-- The same additive step as MySQL's (see there for what each table is for).
ALTER TABLE user ADD COLUMN security_stamp VARCHAR(32);
ALTER TABLE user ADD COLUMN display_name VARCHAR(50);

CREATE TABLE IF NOT EXISTS browser_session (
  session_key CHAR(64) NOT NULL PRIMARY KEY,
  user_id INTEGER REFERENCES user (user_id) ON DELETE CASCADE,
  data TEXT NOT NULL,
  created_date_time DATETIME NOT NULL,
  last_seen_date_time DATETIME NOT NULL,
  expiry_date_time DATETIME NOT NULL,
  user_agent VARCHAR(255),
  ip VARCHAR(64)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS browser_session_user ON browser_session (user_id);
CREATE INDEX IF NOT EXISTS browser_session_expiry ON browser_session (expiry_date_time);

CREATE TABLE IF NOT EXISTS account_token (
  token_hash CHAR(64) NOT NULL PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE,
  purpose VARCHAR(16) NOT NULL,
  created_date_time DATETIME NOT NULL,
  expires_date_time DATETIME NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS account_token_user ON account_token (user_id, purpose);

CREATE TABLE IF NOT EXISTS unverified_email (
  user_id INTEGER NOT NULL PRIMARY KEY REFERENCES user (user_id) ON DELETE CASCADE,
  created_date_time DATETIME NOT NULL
);

CREATE TABLE IF NOT EXISTS api_token (
  token_id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE,
  name VARCHAR(50) NOT NULL,
  token_hash CHAR(64) NOT NULL UNIQUE,
  scope VARCHAR(16) NOT NULL,
  created_date_time DATETIME NOT NULL,
  expires_date_time DATETIME,
  last_used_date_time DATETIME
);
CREATE INDEX IF NOT EXISTS api_token_user ON api_token (user_id);
