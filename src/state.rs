//! The one cloneable state every handler receives.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::{
    attachments::Attachments,
    auth::{
        access::AccountAccess,
        jwt::JwtKeys,
        limits::{RateLimits, StreamSlots},
        password::PasswordHasher,
    },
    cache::{friend_lists::FriendListCache, history::HistoryCache},
    config::Config,
    db::Db,
    events::EventHub,
    mail::Mailer,
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
    /// Disabled accounts and sign-outs everywhere, as an operator decided them.
    pub access: Arc<AccountAccess>,
    /// Outgoing mail, sent off the request path.
    pub mailer: Mailer,
    /// Open event streams per user.
    pub streams: Arc<StreamSlots>,
    /// Files sent with messages, and where they are stored.
    pub attachments: Attachments,
    /// The latest messages of open conversations (`crate::cache::history`).
    pub history: HistoryCache,
    /// The first pages of people's friend lists (`crate::cache::friend_lists`).
    pub friend_lists: FriendListCache,
}

impl FromRef<AppState> for Db {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}
