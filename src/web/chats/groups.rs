//! Group administration: create, the members panel, add and remove, rename, leave.

use askama::Template;
use axum::{
    extract::{Path, State},
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
        friends::{self as friend_store, ListKind},
        messages::{self, GroupChat, GroupId},
        users::{self, User, UserSummary},
    },
    web::{redirect, render, Ctx, Layout, UsernameInput},
};

/// The members panel beside a group chat.
pub(super) struct GroupPanel {
    pub(super) id: GroupId,
    pub(super) members: Vec<UserSummary>,
    pub(super) is_creator: bool,
    /// Friends of the viewer who are not members yet.
    pub(super) addable: Vec<UserSummary>,
}

impl GroupPanel {
    pub(super) async fn load(state: &AppState, me: &User, chat: &GroupChat) -> AppResult<Self> {
        let members = messages::members(&state.db, chat.group_chat_id).await?;
        let friends = friend_store::list(&state.db, me.user_id, ListKind::Friends, None, 100)
            .await?
            .results;
        let addable = friends
            .into_iter()
            .filter(|f| !members.iter().any(|m| m.user_id == f.user_id))
            .collect();
        Ok(Self {
            id: chat.group_chat_id,
            members,
            is_creator: chat.creator_id == Some(me.user_id),
            addable,
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
    let mut members = Vec::new();
    for username in input.member.iter().take(100) {
        members.push(users::named(&state.db, username).await?);
    }
    let chat = messages::create_group(&state.db, &ctx.user, &name, &members).await?;
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
    messages::add_member(&state.db, &ctx.user, id, &member).await?;
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
    Ok(redirect(ctx.htmx, &format!("/chats/g/{id}")))
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
