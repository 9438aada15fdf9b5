-- The same indexes as MySQL's (see there).
CREATE INDEX IF NOT EXISTS message_received ON message (reciever_id, sender_id, message_id);
CREATE INDEX IF NOT EXISTS message_unseen ON message (reciever_id, seen, group_chat_id, sender_id);
