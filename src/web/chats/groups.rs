//! Group administration: create, the members panel, add and remove, rename, leave.

use askama::Template;
use std::collections::HashSet;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    Form,
};
use axum_extra::extract::Form as RepeatedForm;
use serde::Deserialize;

use crate::{
    domain::GroupName,
    error::{AppError, AppResult},
    state::AppState,
    store::{
        events as event_store, friends as friend_store,
        messages::{self, GroupChat, GroupId},
        users::{self, User, UserSummary},
    },
    web::{redirect, render, Ctx, Layout, UsernameInput},
};

/// One member in the settings panel.
pub(super) struct MemberRow {
    pub(super) user_id: i32,
    pub(super) username: String,
    pub(super) me: bool,
    /// A friend's presence (mine is always online here); `None` for members who are not
    /// my friends, whose presence I am not told.
    pub(super) online: Option<bool>,
}

/// The group's settings panel beside the chat: its name, members, adding, leaving.
pub(super) struct GroupPanel {
    pub(super) id: GroupId,
    pub(super) name: String,
    pub(super) members: Vec<MemberRow>,
    pub(super) is_creator: bool,
}

impl GroupPanel {
    pub(super) async fn load(state: &AppState, me: &User, chat: &GroupChat) -> AppResult<Self> {
        let members = messages::members(&state.db, chat.group_chat_id).await?;
        let friends: HashSet<i32> = friend_store::accepted_friend_ids(&state.db, me.user_id)
            .await?
            .into_iter()
            .collect();
        let friend_members: Vec<i32> = members
            .iter()
            .map(|m| m.user_id)
            .filter(|id| friends.contains(id))
            .collect();
        let online = event_store::online_among(&state.db, &friend_members).await?;
        Ok(Self {
            id: chat.group_chat_id,
            name: chat.name.clone(),
            members: members
                .into_iter()
                .map(|m| MemberRow {
                    me: m.user_id == me.user_id,
                    online: if m.user_id == me.user_id {
                        Some(true)
                    } else if friends.contains(&m.user_id) {
                        Some(online.contains(&m.user_id))
                    } else {
                        None
                    },
                    user_id: m.user_id,
                    username: m.username,
                })
                .collect(),
            is_creator: chat.creator_id == Some(me.user_id),
        })
    }
}

#[derive(Template)]
#[template(path = "partials/members.html")]
struct MembersPanel {
    layout: Layout,
    group: GroupPanel,
}

async fn members_panel(state: &AppState, ctx: Ctx, id: GroupId) -> AppResult<Html<String>> {
    let chat = messages::require_member(&state.db, ctx.user.user_id, id).await?;
    let group = GroupPanel::load(state, &ctx.user, &chat).await?;
    render(&MembersPanel {
        layout: ctx.layout,
        group,
    })
}

pub(super) async fn group_members(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
) -> AppResult<Html<String>> {
    members_panel(&state, ctx, id).await
}

#[derive(Deserialize)]
pub(super) struct CreateGroupInput {
    #[serde(default)]
    name: String,
    /// Repeated `member` fields, one per selected friend.
    #[serde(default)]
    member: Vec<String>,
}

pub(super) async fn create_group(
    State(state): State<AppState>,
    ctx: Ctx,
    RepeatedForm(input): RepeatedForm<CreateGroupInput>,
) -> AppResult<Response> {
    let name = GroupName::parse(&input.name).map_err(AppError::BadRequest)?;
    let named = &input.member[..input.member.len().min(100)];
    let members = users::all_named(&state.db, named).await?;
    let chat = messages::create_group(
        &state.db,
        &ctx.user,
        &name,
        &members,
        state.config.max_group_members,
    )
    .await?;
    state.events.wake();
    Ok(redirect(
        ctx.htmx,
        &format!("/chats/g/{}", chat.group_chat_id),
    ))
}

pub(super) async fn group_add_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let member = input.user(&state).await?;
    messages::add_member(
        &state.db,
        &ctx.user,
        id,
        &member,
        state.config.max_group_members,
    )
    .await?;
    state.events.wake();
    refreshed_members(&state, ctx, id).await
}

pub(super) async fn group_remove_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<UsernameInput>,
) -> AppResult<Response> {
    let member = input.user(&state).await?;
    messages::remove_member(&state.db, &ctx.user, id, &member).await?;
    state.events.wake();
    refreshed_members(&state, ctx, id).await
}

/// After a member change: htmx gets the panel again; a plain form goes back to the chat.
async fn refreshed_members(state: &AppState, ctx: Ctx, id: GroupId) -> AppResult<Response> {
    if !ctx.htmx {
        return Ok(redirect(false, &format!("/chats/g/{id}")));
    }
    Ok(members_panel(state, ctx, id).await?.into_response())
}

#[derive(Deserialize)]
pub(super) struct RenameInput {
    #[serde(default)]
    name: String,
}

pub(super) async fn group_rename(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Form(input): Form<RenameInput>,
) -> AppResult<Response> {
    let name = GroupName::parse(&input.name).map_err(AppError::BadRequest)?;
    messages::rename(&state.db, &ctx.user, id, &name).await?;
    state.events.wake();
    // The page hears the rename on its live stream like every member's, and updates
    // its heading, title, list and this panel from there.
    if ctx.htmx {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(redirect(false, &format!("/chats/g/{id}")))
}

#[derive(Deserialize)]
pub(super) struct CandidatesQuery {
    #[serde(default)]
    username: String,
}

/// Friends matching what was typed in "Add a member", who are not members yet.
#[derive(Template)]
#[template(path = "partials/member_candidates.html")]
struct MemberCandidates {
    layout: Layout,
    id: GroupId,
    query: String,
    candidates: Vec<UserSummary>,
}

pub(super) async fn group_candidates(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
    Query(q): Query<CandidatesQuery>,
) -> AppResult<Html<String>> {
    messages::require_member(&state.db, ctx.user.user_id, id).await?;
    let query = q.username.trim().chars().take(25).collect::<String>();
    let candidates = if query.is_empty() {
        Vec::new()
    } else {
        let members: HashSet<i32> = messages::members(&state.db, id)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        friend_store::friends_with_prefix(&state.db, ctx.user.user_id, &query, 20)
            .await?
            .into_iter()
            .filter(|f| !members.contains(&f.user_id))
            .take(8)
            .collect()
    };
    render(&MemberCandidates {
        layout: ctx.layout,
        id,
        query,
        candidates,
    })
}

pub(super) async fn group_leave(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<GroupId>,
) -> AppResult<Response> {
    let me = ctx.user.clone();
    messages::remove_member(&state.db, &ctx.user, id, &me).await?;
    state.events.wake();
    Ok(redirect(ctx.htmx, "/chats"))
}
