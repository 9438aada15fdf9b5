//! The one cloneable state every handler receives.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::{
    attachments::Attachments,
    auth::{jwt::JwtKeys, limits::RateLimits, password::PasswordHasher},
    config::Config,
    db::Db,
    events::EventHub,
    store::{sending::SendQueue, users::Directory},
};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub hasher: PasswordHasher,
    pub jwt: Arc<JwtKeys>,
    pub limits: Arc<RateLimits>,
    pub events: EventHub,
    /// Where messages are sent: the group-committing writers.
    pub sends: SendQueue,
    /// User ids and names, remembered for the hot paths.
    pub directory: Arc<Directory>,
    /// Files sent with messages, and where they are stored.
    pub attachments: Attachments,
}

impl FromRef<AppState> for Db {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}
