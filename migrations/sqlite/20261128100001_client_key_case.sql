-- MySQL's step makes client_key compare case-sensitively. SQLite's text comparison is
-- already binary, so nothing changes here; the file keeps both folders' names in step.
SELECT 1;
