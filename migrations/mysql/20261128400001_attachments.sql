-- Files attached to messages (additive: the original service never reads this table).
-- A row is written when a file has been checked and before its objects are stored, with
-- message_id NULL until the message is sent; rows still unsent after an hour, and rows
-- whose message is gone, are deleted with their objects by a periodic task. No foreign
-- key to message on purpose: deleting a message must not drop the rows that say which
-- stored objects to delete.
--   public_id     128 random bits (hex): the unguessable name in URLs and storage keys
--   content_type  the type served, decided from the bytes (never the name or header)
--   kind          image (re-encoded, with a thumbnail) or file (a download)
--   width, height an image's size after EXIF orientation
CREATE TABLE IF NOT EXISTS attachment (
  attachment_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  public_id CHAR(32) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
  uploader_id INT NOT NULL,
  message_id INT NULL,
  position SMALLINT NOT NULL DEFAULT 0,
  name VARCHAR(255) NOT NULL,
  content_type VARCHAR(127) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
  kind VARCHAR(8) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
  size BIGINT NOT NULL,
  width INT NULL,
  height INT NULL,
  thumbnail_type VARCHAR(32) CHARACTER SET ascii COLLATE ascii_general_ci NULL,
  created_date_time DATETIME(6) NOT NULL,
  UNIQUE KEY attachment_public_id (public_id),
  KEY attachment_message (message_id, position),
  KEY attachment_unsent (created_date_time)
) DEFAULT CHARSET = utf8mb4;
