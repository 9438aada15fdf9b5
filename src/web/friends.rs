//! The friends page: friends, requests received and sent, blocked users, and search.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;

use super::{
    avatar::{display_names, Person},
    redirect, render, Ctx, Layout, UsernameInput,
};
use crate::{
    error::AppResult,
    state::AppState,
    store::{
        events as event_store,
        friends::{self as friend_store, ListKind, Relationship},
        users::UserSummary,
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/friends", get(friends_page))
        .route("/friends/sections", get(sections))
        .route("/friends/search", get(search))
        .route("/friends/request", post(send_request))
        .route("/friends/accept", post(accept))
        .route("/friends/decline", post(decline))
        .route("/friends/block", post(block))
        .route("/friends/unblock", post(unblock))
        .route("/friends/remove", post(remove))
}

struct FriendRow {
    user_id: i32,
    username: String,
    person: Person,
    online: bool,
}

struct Sections {
    friends: Vec<FriendRow>,
    received: Vec<UserSummary>,
    sent: Vec<UserSummary>,
    blocked: Vec<UserSummary>,
}

const LIST_LIMIT: u32 = 100;

async fn load_sections(state: &AppState, me: i32) -> AppResult<Sections> {
    let friends = friend_store::list(&state.db, me, ListKind::Friends, None, LIST_LIMIT)
        .await?
        .results;
    let ids: Vec<i32> = friends.iter().map(|f| f.user_id).collect();
    let online = event_store::online_among(&state.db, &ids).await?;
    let names = display_names(state, ids.iter().copied()).await?;
    Ok(Sections {
        friends: friends
            .into_iter()
            .map(|f| FriendRow {
                online: online.contains(&f.user_id),
                person: Person::new(&f.username, names.get(&f.user_id).map(String::as_str)),
                user_id: f.user_id,
                username: f.username,
            })
            .collect(),
        received: friend_store::list(&state.db, me, ListKind::RequestsReceived, None, LIST_LIMIT)
            .await?
            .results,
        sent: friend_store::list(&state.db, me, ListKind::RequestsSent, None, LIST_LIMIT)
            .await?
            .results,
        blocked: friend_store::list(&state.db, me, ListKind::Blocked, None, LIST_LIMIT)
            .await?
            .results,
    })
}

#[derive(Template)]
#[template(path = "pages/friends.html")]
struct FriendsPage {
    layout: Layout,
    s: Sections,
}

#[derive(Template)]
#[template(path = "pages/friends.html", block = "sections")]
struct SectionsFragment {
    layout: Layout,
    s: Sections,
}

async fn friends_page(State(state): State<AppState>, mut ctx: Ctx) -> AppResult<Html<String>> {
    ctx.layout.section = "friends";
    let s = load_sections(&state, ctx.user.user_id).await?;
    render(&FriendsPage {
        layout: ctx.layout,
        s,
    })
}

async fn sections(State(state): State<AppState>, ctx: Ctx) -> AppResult<Html<String>> {
    let s = load_sections(&state, ctx.user.user_id).await?;
    render(&SectionsFragment {
        layout: ctx.layout,
        s,
    })
}

struct SearchRow {
    username: String,
    relationship: Relationship,
}

#[derive(Template)]
#[template(path = "partials/search_results.html")]
struct SearchResults {
    layout: Layout,
    query: String,
    rows: Vec<SearchRow>,
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// Suggestions as the user types: prefix match, at most 10, each with the action that
/// fits how that user stands with me. Two queries, whatever the number of results.
async fn search(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<SearchQuery>,
) -> AppResult<Html<String>> {
    let query = q.q.trim().chars().take(25).collect::<String>();
    let found = if query.is_empty() {
        Vec::new()
    } else {
        friend_store::search(&state.db, ctx.user.user_id, &query, 10).await?
    };
    let ids: Vec<i32> = found.iter().map(|u| u.user_id).collect();
    let relationships = friend_store::relationships(&state.db, ctx.user.user_id, &ids).await?;
    let rows = found
        .into_iter()
        .map(|u| SearchRow {
            relationship: relationships
                .get(&u.user_id)
                .copied()
                .unwrap_or(Relationship::None),
            username: u.username,
        })
        .collect();
    render(&SearchResults {
        layout: ctx.layout,
        query,
        rows,
    })
}

/// After an action: htmx gets the refreshed sections (rows and counts); a plain form is
/// sent back to the page.
async fn after_action(state: &AppState, ctx: Ctx) -> AppResult<Response> {
    state.events.wake();
    if !ctx.htmx {
        return Ok(redirect(false, "/friends"));
    }
    let mut layout = ctx.layout;
    layout.pending_requests = friend_store::counts(&state.db, ctx.user.user_id)
        .await?
        .get("received")
        .copied()
        .unwrap_or(0);
    let s = load_sections(state, ctx.user.user_id).await?;
    let mut response = render(&SectionsFragment { layout, s })?.into_response();
    response.headers_mut().insert(
        "HX-Retarget",
        axum::http::HeaderValue::from_static("#friend-sections"),
    );
    response.headers_mut().insert(
        "HX-Reswap",
        axum::http::HeaderValue::from_static("innerHTML"),
    );
    response.headers_mut().insert(
        "HX-Trigger",
        axum::http::HeaderValue::from_static("friends-changed"),
    );
    Ok(response)
}

async fn send_request(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    state.limits.check_friend_request(ctx.user.user_id).await?;
    let other = input.user(&state).await?;
    friend_store::request(&state.db, &ctx.user, &other).await?;
    after_action(&state, ctx).await
}

async fn accept(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::answer(&state.db, &ctx.user, &other, true).await?;
    after_action(&state, ctx).await
}

async fn decline(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::answer(&state.db, &ctx.user, &other, false).await?;
    after_action(&state, ctx).await
}

async fn block(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::block(&state.db, &ctx.user, &other).await?;
    after_action(&state, ctx).await
}

async fn unblock(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::delete(&state.db, &ctx.user, &other, true).await?;
    after_action(&state, ctx).await
}

/// Cancels a request I sent, or unfriends.
async fn remove(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::delete(&state.db, &ctx.user, &other, false).await?;
    after_action(&state, ctx).await
}
