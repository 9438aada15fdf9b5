//! messenger: a self-hosted chat server.
//!
//! Layout: `config` and `telemetry` set up the process; `startup` assembles the app;
//! `web` (pages) and `api` (JSON) are thin layers over `store` (the only SQL) and
//! `domain` (parsed input); `auth` says who is asking; `events` carries live updates, over server-sent events
//! and, for the original service's web client, `socketio`.

pub mod accounts;
pub mod admin;
pub mod api;
pub mod assets;
pub mod attachments;
pub mod auth;
pub mod background;
pub mod cache;
pub mod config;
pub mod conversations;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod health;
pub mod mail;
pub mod monitoring;
pub mod rich;
pub mod socketio;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;
