//! All integration tests compile into one binary. Each test starts the real server on a
//! random port with a fresh database, on SQLite and (with `TEST_MYSQL_URL`) on MySQL.
//! `harness.rs` registers and runs them; a test this machine cannot run shows as ignored.

mod harness;
mod helpers;

mod accounts;
mod browser;
mod deployment;
mod foundation;
mod friends;
mod limits;
mod live;
mod messages;
mod rich;
mod search;

fn main() {
    harness::run().exit();
}
