//! Messages, conversations, group chats, read marks and typing.

use axum::{
    extract::{DefaultBodyLimit, FromRequest, Path, Request, State},
    http::StatusCode,
    routing::{get, patch, post},
    Json, Router,
};
use serde::Deserialize;

use super::{
    extract::{ApiJson, ApiQuery, PageQuery},
    friends::existing_user,
};
use crate::{
    attachments,
    auth::{ApiCaller, ApiUser},
    conversations,
    domain::{cursor::Page, GroupName, MessageContent},
    error::{AppError, AppResult},
    state::AppState,
    store::{
        messages::{
            self, Conversation, ConversationSummary, GroupChat, GroupId, Message, MessageId,
        },
        rich::{self, RichSend},
        users::{User, UserSummary},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        // Sends may carry files (multipart): the application's upload limit applies
        // (`startup::body_budget`), not axum's default of 2 MB.
        .route(
            "/messages/",
            get(direct_history)
                .post(send)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/messages",
            get(direct_history)
                .post(send)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/messages/seen", post(seen))
        .route("/messages/{id}", patch(edit).delete(delete))
        .route("/conversations", get(conversations))
        .route("/typing", post(typing))
        .route("/group_chats/", get(my_groups).post(create_group))
        .route("/group_chats", get(my_groups).post(create_group))
        .route("/group_chats/{id}", get(group_details).patch(rename_group))
        .route("/group_chats/{id}/messages", get(group_history))
        .route("/group_chats/{id}/members", post(add_member))
        .route(
            "/group_chats/{id}/members/{username}",
            axum::routing::delete(remove_member),
        )
        .route("/group_chats/{id}/leave", post(leave))
}

#[derive(Deserialize)]
struct HistoryQuery {
    friend_username: String,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn direct_history(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
    ApiQuery(render): ApiQuery<RenderQuery>,
) -> AppResult<Json<Page<Message>>> {
    let other = state.directory.named(&state.db, &q.friend_username).await?;
    let (limit, cursor) = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .parse()?;
    let mut page = messages::history(
        &state.db,
        me.user_id,
        Conversation::Direct(other.user_id),
        cursor.as_ref(),
        limit,
    )
    .await?;
    rich::for_viewer(&mut page.results, me.user_id, render.html()?);
    Ok(Json(page))
}

async fn group_history(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    Path(id): Path<GroupId>,
    ApiQuery(q): ApiQuery<PageQuery>,
    ApiQuery(render): ApiQuery<RenderQuery>,
) -> AppResult<Json<Page<Message>>> {
    messages::require_member(&state.db, me.user_id, id).await?;
    let (limit, cursor) = q.parse()?;
    let mut page = messages::history(
        &state.db,
        me.user_id,
        Conversation::Group(id),
        cursor.as_ref(),
        limit,
    )
    .await?;
    rich::for_viewer(&mut page.results, me.user_id, render.html()?);
    Ok(Json(page))
}

/// `?render=html`: message objects also carry their text as safe HTML (`html`).
#[derive(Deserialize)]
pub struct RenderQuery {
    render: Option<String>,
}

impl RenderQuery {
    pub fn html(&self) -> AppResult<bool> {
        match self.render.as_deref() {
            None | Some("") | Some("text") => Ok(false),
            Some("html") => Ok(true),
            Some(_) => Err(AppError::unprocessable(
                &["query", "render"],
                "render must be html or text",
            )),
        }
    }
}

#[derive(Deserialize)]
struct SendQuery {
    addressee_username: Option<String>,
}

#[derive(Deserialize)]
struct SendBody {
    content: String,
    group_chat_id: Option<GroupId>,
    /// Optional idempotency key: the same key from the same sender posts once.
    client_key: Option<String>,
    /// Additive: uploads (`POST /api/attachments`) sent with the message; the content
    /// may then be empty.
    #[serde(default)]
    attachment_ids: Vec<String>,
    /// Additive: the message this one answers (same conversation).
    reply_to_message_id: Option<MessageId>,
}

/// A send as JSON (the original's), or as a multipart form with the files in it (for
/// scripts: `content`, `group_chat_id`, `client_key` fields and file parts).
struct SendInput {
    body: SendBody,
    uploads: Vec<attachments::Prepared>,
}

impl FromRequest<AppState> for SendInput {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> AppResult<Self> {
        if !attachments::upload::is_multipart(request.headers()) {
            let ApiJson(body) = ApiJson::<SendBody>::from_request(request, state).await?;
            return Ok(Self {
                body,
                uploads: Vec::new(),
            });
        }
        let form = state.attachments.read_form(request, state).await?;
        let body = SendBody {
            content: form.field("content").unwrap_or_default().to_string(),
            group_chat_id: optional_id(&form, "group_chat_id")?,
            client_key: form.field("client_key").map(String::from),
            attachment_ids: attachments::Files::parse_ids(
                form.field("attachment_ids").unwrap_or_default(),
            ),
            reply_to_message_id: optional_id(&form, "reply_to_message_id")?,
        };
        Ok(Self {
            body,
            uploads: form.files,
        })
    }
}

/// An optional integer field of a multipart send: absent, empty or `null` is none.
fn optional_id<T: std::str::FromStr>(
    form: &attachments::upload::Form,
    name: &str,
) -> AppResult<Option<T>> {
    match form.field(name).map(str::trim) {
        None | Some("") | Some("null") => Ok(None),
        Some(id) => id.parse().map(Some).map_err(|_| {
            AppError::unprocessable(&["body", name], "Input should be a valid integer")
        }),
    }
}

pub fn parse_content(raw: &str) -> AppResult<MessageContent> {
    MessageContent::parse(raw).map_err(|m| AppError::unprocessable(&["body", "content"], m))
}

async fn send(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiQuery(q): ApiQuery<SendQuery>,
    ApiQuery(render): ApiQuery<RenderQuery>,
    SendInput { body, uploads }: SendInput,
) -> AppResult<(StatusCode, Json<Message>)> {
    let with_html = render.html()?;
    let my_id = me.user_id;
    let to = conversations::resolve(&state, q.addressee_username.as_deref(), body.group_chat_id)
        .await?
        .conversation();
    let files = attachments::Files {
        ids: body.attachment_ids,
        uploads,
    };
    let (mut message, created) = attachments::send(
        &state,
        me,
        to,
        attachments::Draft {
            text: &body.content,
            client_key: body.client_key,
            rich: RichSend::replying_to(body.reply_to_message_id),
        },
        files,
        |m| AppError::unprocessable(&["body", "content"], m),
    )
    .await?;
    rich::for_viewer(std::slice::from_mut(&mut message), my_id, with_html);
    if created {
        state.events.wake();
    }
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(message),
    ))
}

#[derive(Deserialize)]
struct EditBody {
    content: String,
}

async fn edit(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    Path(id): Path<MessageId>,
    ApiQuery(render): ApiQuery<RenderQuery>,
    ApiJson(body): ApiJson<EditBody>,
) -> AppResult<Json<Message>> {
    let with_html = render.html()?;
    let content = parse_content(&body.content)?;
    let mut message = messages::edit(&state.db, &me, id, &content).await?;
    rich::for_viewer(std::slice::from_mut(&mut message), me.user_id, with_html);
    state.events.wake();
    Ok(Json(message))
}

async fn delete(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    Path(id): Path<MessageId>,
) -> AppResult<Json<()>> {
    messages::delete(&state.db, &me, id).await?;
    state.events.wake();
    state.attachments.purge_message(&state.db, id).await;
    Ok(Json(()))
}

#[derive(Deserialize)]
struct SeenBody {
    message_id: MessageId,
    friend_username: Option<String>,
    group_chat_id: Option<GroupId>,
}

async fn seen(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiJson(body): ApiJson<SeenBody>,
) -> AppResult<Json<serde_json::Value>> {
    let conversation =
        conversations::resolve(&state, body.friend_username.as_deref(), body.group_chat_id)
            .await?
            .conversation();
    let changed = messages::mark_seen(&state.db, me.user_id, conversation, body.message_id).await?;
    if changed {
        state.events.wake();
    }
    Ok(Json(serde_json::json!({ "updated": changed })))
}

async fn conversations(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
) -> AppResult<Json<Vec<ConversationSummary>>> {
    Ok(Json(messages::conversations(&state.db, me.user_id).await?))
}

#[derive(Deserialize)]
struct TypingBody {
    friend_username: Option<String>,
    group_chat_id: Option<GroupId>,
}

async fn typing(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiJson(body): ApiJson<TypingBody>,
) -> AppResult<StatusCode> {
    state.limits.check_typing(me.user_id)?;
    let conversation =
        conversations::resolve(&state, body.friend_username.as_deref(), body.group_chat_id)
            .await?
            .conversation();
    messages::typing(&state.db, &me, conversation).await?;
    state.events.wake();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct CreateGroupBody {
    group_chat_name: String,
    #[serde(default)]
    usernames: Vec<String>,
}

pub fn parse_group_name(raw: &str) -> AppResult<GroupName> {
    GroupName::parse(raw).map_err(|m| AppError::unprocessable(&["body", "group_chat_name"], m))
}

async fn create_group(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiJson(body): ApiJson<CreateGroupBody>,
) -> AppResult<(StatusCode, Json<serde_json::Value>)> {
    let name = parse_group_name(&body.group_chat_name)?;
    if body.usernames.len() > 100 {
        return Err(AppError::unprocessable(
            &["body", "usernames"],
            "at most 100 members at once",
        ));
    }
    let mut members: Vec<User> = Vec::with_capacity(body.usernames.len());
    for username in &body.usernames {
        members.push(existing_user(&state, username).await?);
    }
    let chat = messages::create_group(&state.db, &me, &name, &members).await?;
    state.events.wake();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "group_chat_id": chat.group_chat_id, "name": chat.name })),
    ))
}

async fn my_groups(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
) -> AppResult<Json<Vec<GroupChat>>> {
    Ok(Json(messages::my_groups(&state.db, me.user_id).await?))
}

#[derive(serde::Serialize)]
struct GroupDetails {
    #[serde(flatten)]
    chat: GroupChat,
    members: Vec<UserSummary>,
}

async fn group_details(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    Path(id): Path<GroupId>,
) -> AppResult<Json<GroupDetails>> {
    let chat = messages::require_member(&state.db, me.user_id, id).await?;
    let members = messages::members(&state.db, id).await?;
    Ok(Json(GroupDetails { chat, members }))
}

#[derive(Deserialize)]
struct RenameBody {
    name: String,
}

async fn rename_group(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    Path(id): Path<GroupId>,
    ApiJson(body): ApiJson<RenameBody>,
) -> AppResult<Json<GroupChat>> {
    let name = parse_group_name(&body.name)?;
    let chat = messages::rename(&state.db, &me, id, &name).await?;
    state.events.wake();
    Ok(Json(chat))
}

#[derive(Deserialize)]
struct AddMemberBody {
    username: String,
}

async fn add_member(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    Path(id): Path<GroupId>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> AppResult<(StatusCode, Json<()>)> {
    let member = existing_user(&state, &body.username).await?;
    messages::add_member(&state.db, &me, id, &member).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(())))
}

async fn remove_member(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    Path((id, username)): Path<(GroupId, String)>,
) -> AppResult<Json<()>> {
    let member = existing_user(&state, &username).await?;
    messages::remove_member(&state.db, &me, id, &member).await?;
    state.events.wake();
    Ok(Json(()))
}

async fn leave(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    Path(id): Path<GroupId>,
) -> AppResult<Json<()>> {
    messages::remove_member(&state.db, &me, id, &me.clone()).await?;
    state.events.wake();
    Ok(Json(()))
}
