-- The chat list (store::messages::conversations) reads per conversation, not per message.
-- Additive only: two indexes, which the original service neither needs nor notices.
--   message_received  who wrote to a user, and their last message: the mirror of
--                     message_direct_pair (sender, recipient, message)
--   message_unseen    a user's unread direct messages, and only those
ALTER TABLE `message`
  ADD KEY `message_received` (`reciever_id`, `sender_id`, `message_id`),
  ADD KEY `message_unseen` (`reciever_id`, `seen`, `group_chat_id`, `sender_id`);
