//! The friends page: friends, requests received and sent, blocked users, and search.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;

use super::{
    avatar::{display_names, Person},
    current_page_path, redirect, render, Ctx, Layout, UsernameInput,
};
use crate::{
    domain::cursor::Cursor,
    error::{AppError, AppResult},
    state::AppState,
    store::{
        events as event_store,
        friends::{self as friend_store, ListKind, Relationship},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/friends", get(friends_page))
        .route("/friends/sections", get(sections))
        .route("/friends/more", get(more))
        .route("/friends/search", get(search))
        .route("/friends/request", post(send_request))
        .route("/friends/accept", post(accept))
        .route("/friends/decline", post(decline))
        .route("/friends/block", post(block))
        .route("/friends/unblock", post(unblock))
        .route("/friends/remove", post(remove))
}

/// Someone in one of the lists (friends, requests, blocked).
struct PersonRow {
    user_id: i32,
    username: String,
    /// Display name (else username) and avatar.
    person: Person,
    /// Friends only: whether they are online now (then kept live by the stream).
    online: bool,
}

/// One of the four lists, a page of it at a time: past [`LIST_LIMIT`] people, "Show
/// more" continues after the last name shown (search stays the fast way to one person).
struct Section {
    kind: &'static str,
    rows: Vec<PersonRow>,
    total: i64,
    /// The name the next page starts after.
    more: Option<String>,
}

struct Sections {
    friends: Section,
    received: Section,
    sent: Section,
    blocked: Section,
}

const LIST_LIMIT: u32 = 100;

async fn load_section(
    state: &AppState,
    me: i32,
    list: ListKind,
    after: Option<&str>,
    total: i64,
) -> AppResult<Section> {
    let kind = list.name();
    let cursor = after
        .filter(|a| !a.is_empty())
        .map(|a| Cursor::Next(a.to_string()));
    let page = friend_store::list(
        &state.db,
        &state.friend_lists,
        me,
        list,
        cursor.as_ref(),
        LIST_LIMIT,
    )
    .await?;
    let more = page
        .cursor
        .next_page
        .as_ref()
        .and_then(|_| page.results.last().map(|u| u.username.clone()));
    let online = if kind == "friends" {
        let ids: Vec<i32> = page.results.iter().map(|f| f.user_id).collect();
        event_store::online_among(&state.db, &ids).await?
    } else {
        Default::default()
    };
    let names = display_names(state, page.results.iter().map(|u| u.user_id)).await?;
    Ok(Section {
        kind,
        total,
        more,
        rows: page
            .results
            .into_iter()
            .map(|u| PersonRow {
                online: online.contains(&u.user_id),
                person: Person::new(&u.username, names.get(&u.user_id).map(String::as_str)),
                user_id: u.user_id,
                username: u.username,
            })
            .collect(),
    })
}

/// Where each list starts: at its beginning, or (a "Show more" link followed without
/// JavaScript) after a name.
#[derive(Deserialize, Default)]
struct SectionsQuery {
    friends_after: Option<String>,
    received_after: Option<String>,
    sent_after: Option<String>,
    blocked_after: Option<String>,
}

async fn load_sections<'a>(
    state: &'a AppState,
    me: i32,
    q: &'a SectionsQuery,
) -> AppResult<Sections> {
    let counts = friend_store::counts(&state.db, me).await?;
    let section = |list: ListKind, after: Option<&'a str>| {
        let total = counts.get(list.name()).copied().unwrap_or(0);
        load_section(state, me, list, after, total)
    };
    Ok(Sections {
        friends: section(ListKind::Friends, q.friends_after.as_deref()).await?,
        received: section(ListKind::RequestsReceived, q.received_after.as_deref()).await?,
        sent: section(ListKind::RequestsSent, q.sent_after.as_deref()).await?,
        blocked: section(ListKind::Blocked, q.blocked_after.as_deref()).await?,
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

/// The next page of one list: its rows and, if there are more, another "Show more".
#[derive(Template)]
#[template(path = "partials/people_rows.html")]
struct MoreRows {
    layout: Layout,
    section: Section,
}

async fn friends_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Query(q): Query<SectionsQuery>,
) -> AppResult<Html<String>> {
    ctx.layout.section = "friends";
    let s = load_sections(&state, ctx.user.user_id, &q).await?;
    render(&FriendsPage {
        layout: ctx.layout,
        s,
    })
}

async fn sections(State(state): State<AppState>, ctx: Ctx) -> AppResult<Html<String>> {
    let s = load_sections(&state, ctx.user.user_id, &SectionsQuery::default()).await?;
    render(&SectionsFragment {
        layout: ctx.layout,
        s,
    })
}

#[derive(Deserialize)]
struct MoreQuery {
    list: String,
    #[serde(default)]
    after: String,
}

async fn more(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<MoreQuery>,
) -> AppResult<Response> {
    let Some(list) = ListKind::named(&q.list) else {
        return Err(AppError::not_found("This page does not exist."));
    };
    let name = list.name();
    if !ctx.htmx {
        let after: String = url::form_urlencoded::byte_serialize(q.after.as_bytes()).collect();
        return Ok(Redirect::to(&format!("/friends?{name}_after={after}")).into_response());
    }
    let section = load_section(&state, ctx.user.user_id, list, Some(&q.after), 0).await?;
    Ok(render(&MoreRows {
        layout: ctx.layout,
        section,
    })?
    .into_response())
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

/// After an action: on the friends page htmx gets the refreshed sections (rows and
/// counts); elsewhere (the people search of the chat screen) only `friends-changed`,
/// which refreshes the search results. A plain form is sent back to the friends page.
async fn after_action(state: &AppState, ctx: Ctx, headers: &HeaderMap) -> AppResult<Response> {
    state.events.wake();
    if !ctx.htmx {
        return Ok(redirect(false, "/friends"));
    }
    if current_page_path(headers).is_some_and(|p| p != "/friends") {
        let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
        response.headers_mut().insert(
            "HX-Trigger",
            axum::http::HeaderValue::from_static("friends-changed"),
        );
        return Ok(response);
    }
    let mut layout = ctx.layout;
    layout.pending_requests = friend_store::counts(&state.db, ctx.user.user_id)
        .await?
        .get("received")
        .copied()
        .unwrap_or(0);
    let s = load_sections(state, ctx.user.user_id, &SectionsQuery::default()).await?;
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
    headers: HeaderMap,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    state.limits.check_friend_request(ctx.user.user_id).await?;
    let other = input.user(&state).await?;
    friend_store::request(&state.db, &state.friend_lists, &ctx.user, &other).await?;
    after_action(&state, ctx, &headers).await
}

async fn accept(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::answer(&state.db, &state.friend_lists, &ctx.user, &other, true).await?;
    after_action(&state, ctx, &headers).await
}

async fn decline(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::answer(&state.db, &state.friend_lists, &ctx.user, &other, false).await?;
    after_action(&state, ctx, &headers).await
}

async fn block(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::block(&state.db, &state.friend_lists, &ctx.user, &other).await?;
    after_action(&state, ctx, &headers).await
}

async fn unblock(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::delete(&state.db, &state.friend_lists, &ctx.user, &other, true).await?;
    after_action(&state, ctx, &headers).await
}

/// Cancels a request I sent, or unfriends.
async fn remove(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let other = input.user(&state).await?;
    friend_store::delete(&state.db, &state.friend_lists, &ctx.user, &other, false).await?;
    after_action(&state, ctx, &headers).await
}
