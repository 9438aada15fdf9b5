-- Each user's view of their friendships, derived from the status history and kept in the
-- same transaction as every change, so that every list (friends, requests received and
-- sent, blocked) is one index range in username order, however many friends one has.
-- `list`: F friends, I request received, O request sent, D declined, B blocked by the
-- owner, X blocked by the other (never shown to the owner).
-- Additive: the original service neither reads nor writes it. Should it write friendships
-- again, run this file's DELETE and INSERTs once more to rebuild.
CREATE TABLE IF NOT EXISTS `friend_list` (
  `owner_id` int(11) NOT NULL,
  `other_id` int(11) NOT NULL,
  `other_username` varchar(25) NOT NULL,
  `list` char(1) NOT NULL,
  PRIMARY KEY (`owner_id`, `other_id`),
  KEY `friend_list_page` (`owner_id`, `list`, `other_username`),
  CONSTRAINT `friend_list_owner_FK` FOREIGN KEY (`owner_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE,
  CONSTRAINT `friend_list_other_FK` FOREIGN KEY (`other_id`) REFERENCES `user` (`user_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

DELETE FROM `friend_list`;

INSERT IGNORE INTO `friend_list` (`owner_id`, `other_id`, `other_username`, `list`)
SELECT f.requester_id, f.addressee_id, u.username,
       CASE s.status_code_id WHEN 'A' THEN 'F' WHEN 'R' THEN 'O' WHEN 'D' THEN 'D'
            ELSE CASE WHEN s.specifier_id = f.requester_id THEN 'B' ELSE 'X' END END
FROM friendship f
JOIN friendship_status s ON s.requester_id = f.requester_id AND s.addressee_id = f.addressee_id
 AND s.specified_date_time = (SELECT MAX(s2.specified_date_time) FROM friendship_status s2
                              WHERE s2.requester_id = f.requester_id AND s2.addressee_id = f.addressee_id)
JOIN user u ON u.user_id = f.addressee_id;

INSERT IGNORE INTO `friend_list` (`owner_id`, `other_id`, `other_username`, `list`)
SELECT f.addressee_id, f.requester_id, u.username,
       CASE s.status_code_id WHEN 'A' THEN 'F' WHEN 'R' THEN 'I' WHEN 'D' THEN 'D'
            ELSE CASE WHEN s.specifier_id = f.addressee_id THEN 'B' ELSE 'X' END END
FROM friendship f
JOIN friendship_status s ON s.requester_id = f.requester_id AND s.addressee_id = f.addressee_id
 AND s.specified_date_time = (SELECT MAX(s2.specified_date_time) FROM friendship_status s2
                              WHERE s2.requester_id = f.requester_id AND s2.addressee_id = f.addressee_id)
JOIN user u ON u.user_id = f.requester_id;
