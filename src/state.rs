//! The one cloneable state every handler receives.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::{
    auth::{jwt::JwtKeys, limits::RateLimits, password::PasswordHasher},
    config::Config,
    db::Db,
    events::EventHub,
};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub hasher: PasswordHasher,
    pub jwt: JwtKeys,
    pub limits: Arc<RateLimits>,
    pub events: EventHub,
}

impl FromRef<AppState> for Db {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}
