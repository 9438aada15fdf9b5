//! All integration tests compile into one binary. Each test starts the real server on a
//! random port with a fresh database, on SQLite and (with `TEST_MYSQL_URL`) on MySQL.

mod helpers;

mod abuse;
mod account_data;
mod accounts;
mod browser;
mod deployment;
mod display_names;
mod foundation;
mod friends;
mod limits;
mod live;
mod messages;
mod password_reset;
mod sessions;
mod tokens;
