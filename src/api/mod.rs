//! The JSON API under `/api`, compatible with the original service.
//!
//! Every route is registered through `utoipa-axum`, which adds it to the router and its
//! `#[utoipa::path]` to the OpenAPI document in one call: a route cannot be served without
//! being documented (`tests/integration/openapi.rs` checks the router against the
//! document).

mod account;
mod attachments;
mod auth;
mod doc;
mod events;
pub mod extract;
mod friends;
mod messages;
mod rich;
mod users;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouter},
    routes,
};

use crate::{error::AppError, state::AppState};

pub use messages::parse_content;

/// Every route of the API with its documentation.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(doc::BaseDocument::openapi())
        .merge(account::router())
        .merge(auth::router())
        .merge(attachments::router())
        .merge(users::router())
        .merge(friends::router())
        .merge(messages::router())
        .merge(rich::router())
        .merge(events::router())
        .routes(routes!(doc::openapi_json))
        .routes(routes!(doc::docs_page))
}

pub fn router() -> Router<AppState> {
    let (router, _) = routes().split_for_parts();
    router.fallback(|| async { AppError::not_found("Not Found") })
}

/// The OpenAPI document of [`router`]'s routes, served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    doc::finish(routes().into_openapi())
}

/// Serves and documents `routes` at `alias` too: the original's paths with and without
/// the trailing slash, `receivers` beside the original's `recievers`. The alias's
/// operations get ids of their own (`<id>_alias`), as OpenAPI wants them unique.
fn also_at(routes: UtoipaMethodRouter<AppState>, alias: &str) -> UtoipaMethodRouter<AppState> {
    let (schemas, mut paths, method_router) = routes;
    let (canonical, item) = paths
        .paths
        .iter()
        .next()
        .map(|(path, item)| (path.clone(), item.clone()))
        .expect("routes! yields one path");
    let mut item = item;
    for operation in doc::operations(&mut item).map(|(_, op)| op) {
        operation.operation_id = operation
            .operation_id
            .take()
            .map(|id| format!("{id}_alias"));
        let described = operation.description.take().unwrap_or_default();
        operation.description = Some(format!("The same as `{canonical}`.\n\n{described}"));
    }
    paths.paths.insert(alias.to_string(), item);
    (schemas, paths, method_router)
}
