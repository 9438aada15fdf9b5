//! All integration tests compile into one binary. Each test starts the real server on a
//! random port with a fresh database, on SQLite and (with `TEST_MYSQL_URL`) on MySQL.

mod helpers;

mod accounts;
mod browser;
mod chat_screen;
mod deployment;
mod foundation;
mod friends;
mod limits;
mod live;
mod messages;
