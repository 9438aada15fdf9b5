-- Accounts an operator disabled or signed out everywhere (`messenger admin`). Additive: the
-- original service never reads it. A row exists only for an account an operator acted on.
-- disabled_at: set while the account is disabled (no sign-in, every credential refused).
-- signed_out_at: Unix seconds; bearer tokens issued up to that second are refused, also
-- after the account is enabled again.
CREATE TABLE IF NOT EXISTS account_access (
  user_id INTEGER NOT NULL PRIMARY KEY REFERENCES user (user_id) ON DELETE CASCADE,
  disabled_at DATETIME,
  signed_out_at BIGINT NOT NULL
);
