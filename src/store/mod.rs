//! The only place with SQL. Pages and API handlers call these functions; each is one
//! query or one short transaction, written once for both backends with `db_run!`.

pub mod access;
pub mod account_data;
pub mod account_tokens;
pub mod api_tokens;
pub mod attachments;
pub mod events;
pub mod friends;
pub mod limits;
pub mod messages;
pub mod mutes;
pub mod rich;
pub mod search;
pub mod sending;
pub mod sessions;
pub mod users;

pub use crate::db::Db;
