//! All integration tests compile into one binary. Each test starts the real server on a
//! random port with a fresh database, on SQLite and (with `TEST_MYSQL_URL`) on MySQL.
//! `harness.rs` registers and runs them; a test this machine cannot run shows as ignored.

mod harness;
mod helpers;

mod abuse;
mod account_data;
mod accounts;
mod attachments;
mod browser;
mod chat_screen;
mod deployment;
mod display_names;
mod faults;
mod foundation;
mod friend_list_cache;
mod friends;
mod group_events;
mod history_cache;
mod limits;
mod live;
mod messages;
mod openapi;
mod operations;
mod password_reset;
mod pipeline;
mod proxy;
mod rich;
mod search;
mod sessions;
mod socketio;
mod tokens;

fn main() {
    harness::run().exit();
}
