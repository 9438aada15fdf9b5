-- An idempotency key is unique per sender as written: `abc` and `ABC` are two keys. The
-- table's collation compared them without regard to case, so the second send answered
-- with the first message. Same type and width, binary collation: additive-safe (the
-- original service never reads the column). MySQL reports a _bin column as binary, which
-- sqlx does not decode as text: nothing selects it, and nothing should without a CAST.
ALTER TABLE `message`
  MODIFY `client_key` varchar(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL;
