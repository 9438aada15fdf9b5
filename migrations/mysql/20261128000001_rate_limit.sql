-- Rate limits shared by every process on this database (GCRA: one row per limited key
-- holds its theoretical arrival time). Additive: the original service never reads it.
-- limit_key is a SHA-256 (hex) of the limit's name and subject, so neither addresses nor
-- logins are stored. A row whose tat_ms has passed means the same as no row; a periodic
-- clean-up deletes those.
CREATE TABLE IF NOT EXISTS rate_limit (
  limit_key CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  tat_ms BIGINT NOT NULL
);
