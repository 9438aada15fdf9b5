//! The JSON API under `/api`, compatible with the original service.

mod account;
mod attachments;
mod auth;
mod events;
pub mod extract;
mod friends;
mod messages;
mod rich;
mod users;

use axum::Router;

use crate::{error::AppError, state::AppState};

pub use messages::parse_content;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(account::router())
        .merge(auth::router())
        .merge(attachments::router())
        .merge(users::router())
        .merge(friends::router())
        .merge(messages::router())
        .merge(rich::router())
        .merge(events::router())
        .fallback(|| async { AppError::not_found("Not Found") })
}
