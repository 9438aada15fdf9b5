//! The server-rendered pages: one module per area, each with its `router()`, handlers
//! and templates. Pages are thin: they parse input, call `accounts` or `store`, render.

mod account;
mod chats;
mod friends;
pub mod live;
mod render;
pub mod rich;

use axum::{
    extract::{FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    auth::{csrf_token, extract::user_from_session_parts, MaybePageUser, PageUser},
    error::{AppError, AppResult, RenderedError},
    state::AppState,
    store::{
        friends as friend_store,
        users::{self, User},
    },
};

pub use render::render;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .merge(account::router())
        .merge(chats::router())
        .merge(friends::router())
        .merge(rich::router())
        .route("/events", get(live::page_events))
        .route("/nav/badge", get(badge))
        .fallback(|| async { AppError::not_found("This page does not exist.") })
        .layer(middleware::from_fn_with_state(state, render_errors))
}

/// What the shared layout needs: who is signed in, the CSRF token for forms and htmx,
/// where the live stream starts, and the pending-requests badge.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub username: Option<String>,
    pub csrf: String,
    pub last_event_id: i64,
    pub pending_requests: i64,
    pub section: &'static str,
}

impl Layout {
    pub fn signed_in(&self) -> bool {
        self.username.is_some()
    }
}

/// A signed-in page's user and layout.
pub struct Ctx {
    pub user: User,
    pub layout: Layout,
    pub htmx: bool,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let PageUser(user) = PageUser::from_request_parts(parts, state).await?;
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, m)| AppError::Internal(anyhow::anyhow!(m)).into_response())?;
        let csrf = csrf_token(&session)
            .await
            .map_err(IntoResponse::into_response)?;
        let counts = friend_store::counts(&state.db, user.user_id)
            .await
            .map_err(|e| AppError::from(e).into_response())?;
        let layout = Layout {
            username: Some(user.username.clone()),
            csrf,
            last_event_id: state.events.watermark(),
            pending_requests: counts.get("received").copied().unwrap_or(0),
            section: "",
        };
        Ok(Ctx {
            user,
            layout,
            htmx: is_htmx(&parts.headers),
        })
    }
}

/// An anonymous page's layout (sign-in, sign-up), with the CSRF token of the visitor's session.
pub struct AnonCtx {
    pub layout: Layout,
    pub htmx: bool,
    pub signed_in: bool,
}

impl FromRequestParts<AppState> for AnonCtx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = user_from_session_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?
            .is_some();
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, m)| AppError::Internal(anyhow::anyhow!(m)).into_response())?;
        let csrf = csrf_token(&session)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(AnonCtx {
            layout: Layout {
                csrf,
                ..Layout::default()
            },
            htmx: is_htmx(&parts.headers),
            signed_in,
        })
    }
}

/// Whether htmx sent the request (it then wants a fragment or `HX-Redirect`, not a page).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// A form that names one user (friend actions, group members).
#[derive(Deserialize)]
pub struct UsernameInput {
    #[serde(default)]
    pub username: String,
}

impl UsernameInput {
    /// The user the form names, or 404 `no such user exists`.
    pub async fn user(&self, state: &AppState) -> AppResult<User> {
        users::named(&state.db, &self.username).await
    }
}

/// After a successful form post: htmx follows `HX-Redirect`; a plain form gets a 303.
pub fn redirect(htmx: bool, to: &str) -> Response {
    if htmx {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert("HX-Redirect", v);
        }
        r
    } else {
        Redirect::to(to).into_response()
    }
}

async fn home(MaybePageUser(user): MaybePageUser) -> Redirect {
    match user {
        Some(_) => Redirect::to("/chats"),
        None => Redirect::to("/login"),
    }
}

async fn badge(ctx: Ctx) -> Result<Html<String>, AppError> {
    render(&render::Badge {
        count: ctx.layout.pending_requests,
    })
}

/// Turns an `AppError` from a page route into HTML: a page in the layout, or for htmx a
/// short text that `app.js` shows next to the form that failed.
async fn render_errors(request: Request, next: Next) -> Response {
    let htmx = is_htmx(request.headers());
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<RenderedError>().cloned() else {
        return response;
    };
    let status = response.status();
    let mut rendered = if htmx {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            error.message,
        )
            .into_response()
    } else {
        let page = render::ErrorPage {
            layout: Layout::default(),
            status: status.as_u16(),
            message: error.message,
        };
        match render(&page) {
            Ok(html) => (status, html).into_response(),
            Err(_) => (status, "error").into_response(),
        }
    };
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = response.headers().get(&name) {
            rendered.headers_mut().insert(name, v.clone());
        }
    }
    rendered
}
