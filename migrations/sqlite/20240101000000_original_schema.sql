-- The original schema in SQLite's dialect. Usernames and emails are unique and looked up
-- without regard to case, as MySQL's default collation does.
CREATE TABLE IF NOT EXISTS user (
  user_id INTEGER PRIMARY KEY AUTOINCREMENT,
  username VARCHAR(25) NOT NULL COLLATE NOCASE UNIQUE,
  first_name VARCHAR(30),
  last_name VARCHAR(30),
  birthdate DATETIME,
  password_hash VARCHAR(100) NOT NULL,
  email VARCHAR(255) NOT NULL COLLATE NOCASE UNIQUE
);

CREATE TABLE IF NOT EXISTS friendship_status_code (
  status_code_id CHAR(1) NOT NULL UNIQUE,
  name VARCHAR(20) NOT NULL UNIQUE,
  PRIMARY KEY (status_code_id, name)
);

CREATE TABLE IF NOT EXISTS friendship (
  requester_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  addressee_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  created_date_time DATETIME NOT NULL,
  PRIMARY KEY (requester_id, addressee_id)
);
CREATE INDEX IF NOT EXISTS friendship_addressee_id_FK ON friendship (addressee_id);

CREATE TABLE IF NOT EXISTS friendship_status (
  requester_id INTEGER NOT NULL,
  addressee_id INTEGER NOT NULL,
  specified_date_time DATETIME NOT NULL,
  status_code_id CHAR(1) NOT NULL DEFAULT 'R' REFERENCES friendship_status_code (status_code_id) ON UPDATE CASCADE,
  specifier_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  PRIMARY KEY (requester_id, addressee_id, specified_date_time),
  FOREIGN KEY (requester_id, addressee_id) REFERENCES friendship (requester_id, addressee_id) ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TABLE IF NOT EXISTS group_chat (
  group_chat_id INTEGER PRIMARY KEY AUTOINCREMENT,
  name VARCHAR(20) NOT NULL
);

CREATE TABLE IF NOT EXISTS group_chat_member (
  group_chat_id INTEGER NOT NULL REFERENCES group_chat (group_chat_id) ON DELETE CASCADE ON UPDATE CASCADE,
  member_id INTEGER NOT NULL REFERENCES user (user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  PRIMARY KEY (group_chat_id, member_id)
);
CREATE INDEX IF NOT EXISTS group_chat_member_member_id_FK ON group_chat_member (member_id);

CREATE TABLE IF NOT EXISTS message (
  message_id INTEGER PRIMARY KEY AUTOINCREMENT,
  sender_id INTEGER REFERENCES user (user_id) ON DELETE SET NULL ON UPDATE CASCADE,
  reciever_id INTEGER REFERENCES user (user_id) ON DELETE SET NULL ON UPDATE CASCADE,
  content VARCHAR(300) NOT NULL,
  created_date_time DATETIME NOT NULL,
  last_edited_date_time DATETIME,
  group_chat_id INTEGER REFERENCES group_chat (group_chat_id) ON DELETE SET NULL ON UPDATE CASCADE,
  seen BOOLEAN DEFAULT 0
);
CREATE INDEX IF NOT EXISTS message_sender_id_FK ON message (sender_id);
CREATE INDEX IF NOT EXISTS message_reciever_id_FK ON message (reciever_id);
CREATE INDEX IF NOT EXISTS message_group_chat_id_FK ON message (group_chat_id);

INSERT OR IGNORE INTO friendship_status_code (status_code_id, name) VALUES
  ('R', 'REQUESTED'), ('A', 'ACCEPTED'), ('D', 'DECLINED'), ('B', 'BLOCKED');
