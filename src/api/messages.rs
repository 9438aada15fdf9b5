//! Messages, conversations, group chats, read marks and typing.

use axum::{
    extract::{DefaultBodyLimit, FromRequest, Request, State},
    http::StatusCode,
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouterExt},
    routes,
};

use super::{
    also_at,
    doc::Null,
    extract::{ApiJson, ApiPath, ApiQuery, PageQuery},
    friends::existing_user,
};
use crate::{
    attachments,
    auth::{ApiCaller, ApiUser},
    conversations,
    domain::{cursor::Page, GroupName, MessageContent},
    error::{AppError, AppResult, ErrorBody},
    state::AppState,
    store::{
        messages::{
            self, Conversation, ConversationSummary, GroupChat, GroupId, Message, MessageId,
        },
        rich::{self, RichSend},
        users::{self, UserSummary},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // Sends may carry files (multipart): the application's upload limit applies
        // (`startup::body_budget`), not axum's default of 2 MB.
        .routes(
            also_at(routes!(direct_history, send), "/messages").layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(seen))
        .routes(routes!(edit, delete))
        .routes(routes!(conversations))
        .routes(routes!(typing))
        .routes(also_at(routes!(my_groups, create_group), "/group_chats"))
        .routes(routes!(group_details, rename_group))
        .routes(routes!(group_history))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(leave))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// The other side of the direct conversation.
    friend_username: String,
    /// How many to answer: required, above 0; more than 100 answers 100.
    #[param(required = true, minimum = 1, value_type = i64)]
    limit: Option<i64>,
    /// A `next_page` or `prev_page` of an earlier answer; none for the newest page.
    cursor: Option<String>,
}

const GROUP_ID: &str = "the group's `group_chat_id`";

/// The messages between me and `friend_username`, newest first, paged by message id
/// (the original paged on whole-second times and could skip messages).
#[utoipa::path(
    get,
    path = "/messages/",
    tag = "messages",
    security(("bearer" = [])),
    params(HistoryQuery, RenderQuery),
    responses(
        (status = 200, description = "a page of messages, newest first", body = Page<Message>),
        (status = 400, description = "`invalid cursor`", body = ErrorBody),
        (status = 404, description = "`no such user exists`", body = ErrorBody),
    ),
)]
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
        &state.history,
        me.user_id,
        Conversation::Direct(other.user_id),
        cursor.as_ref(),
        limit,
    )
    .await?;
    rich::for_viewer(&mut page.results, me.user_id, render.html()?);
    Ok(Json(page))
}

/// A group's messages, newest first. *Additive.*
#[utoipa::path(
    get,
    path = "/group_chats/{id}/messages",
    tag = "group chats",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = GROUP_ID), PageQuery, RenderQuery),
    responses(
        (status = 200, description = "a page of messages, newest first", body = Page<Message>),
        (status = 400, description = "`invalid cursor`", body = ErrorBody),
        (status = 404, description = "`group chat not found` (or I am not a member)", body = ErrorBody),
    ),
)]
async fn group_history(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiPath(id): ApiPath<GroupId>,
    ApiQuery(q): ApiQuery<PageQuery>,
    ApiQuery(render): ApiQuery<RenderQuery>,
) -> AppResult<Json<Page<Message>>> {
    messages::require_member(&state.db, me.user_id, id).await?;
    let (limit, cursor) = q.parse()?;
    let mut page = messages::history(
        &state.db,
        &state.history,
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
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RenderQuery {
    /// `html`: messages also carry their text as safe HTML (`html`); `text` (the default)
    /// leaves it out. *Additive.*
    #[param(example = "html")]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SendQuery {
    /// A direct message to this user (a friend); wins over `group_chat_id`.
    addressee_username: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct SendBody {
    /// Up to 300 characters; may be empty when files are attached.
    #[schema(example = "hello")]
    content: String,
    /// A message to this group (when no `addressee_username` is given).
    group_chat_id: Option<GroupId>,
    /// Optional idempotency key (up to 64 characters): the same key from the same sender
    /// posts once. *Additive.*
    client_key: Option<String>,
    /// Additive: uploads (`POST /api/attachments`) sent with the message; the content
    /// may then be empty.
    #[serde(default)]
    attachment_ids: Vec<String>,
    /// Additive: the message this one answers (same conversation).
    reply_to_message_id: Option<MessageId>,
}

/// A send as a multipart form, files included. *Additive.*
#[allow(dead_code)] // describes the form `SendInput` reads
#[derive(ToSchema)]
struct SendForm {
    content: Option<String>,
    group_chat_id: Option<GroupId>,
    client_key: Option<String>,
    /// Ids of earlier uploads, separated by commas or spaces.
    attachment_ids: Option<String>,
    /// File parts (any other field name is a file too).
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
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

/// Sends a message: to `addressee_username` (a friend), or to the group `group_chat_id`.
/// The original answered 500 to every send.
#[utoipa::path(
    post,
    path = "/messages/",
    tag = "messages",
    security(("bearer" = [])),
    params(SendQuery, RenderQuery),
    request_body(content(
        (SendBody = "application/json"),
        (SendForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "the message", body = Message),
        (status = 200, description = "a message with this `client_key` was sent before: that message", body = Message),
        (status = 400, description = "`no addressee or groupchat specified`; `you cannot message this person if you are not their friend`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `friendship was not found`; `user not found` (not a member of the group: the original's text)", body = ErrorBody),
        (status = 415, description = "a body that is neither JSON nor multipart", body = ErrorBody),
        (status = 429, description = "past `SENDS_PER_MINUTE`", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
struct EditBody {
    /// The new text, up to 300 characters.
    content: String,
}

const MESSAGE_ID: &str = "the message's `message_id`";

/// Edits a message of mine; everyone in the conversation hears `message_edited`.
/// *Additive.*
#[utoipa::path(
    patch,
    path = "/messages/{id}",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = MESSAGE_ID), RenderQuery),
    request_body = EditBody,
    responses(
        (status = 200, description = "the edited message", body = Message),
        (status = 400, description = "we are no longer friends", body = ErrorBody),
        (status = 403, description = "`you can only edit your own messages`", body = ErrorBody),
        (status = 404, description = "`message not found`", body = ErrorBody),
    ),
)]
async fn edit(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiPath(id): ApiPath<MessageId>,
    ApiQuery(render): ApiQuery<RenderQuery>,
    ApiJson(body): ApiJson<EditBody>,
) -> AppResult<Json<Message>> {
    let with_html = render.html()?;
    let content = parse_content(&body.content)?;
    let mut message = messages::edit(&state.db, &state.history, &me, id, &content).await?;
    rich::for_viewer(std::slice::from_mut(&mut message), me.user_id, with_html);
    state.events.wake();
    Ok(Json(message))
}

/// Deletes a message of mine for everyone (`message_deleted`). *Additive.*
#[utoipa::path(
    delete,
    path = "/messages/{id}",
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = MESSAGE_ID)),
    responses(
        (status = 200, description = "deleted; the body is `null`", body = Null),
        (status = 400, description = "we are no longer friends", body = ErrorBody),
        (status = 403, description = "`you can only delete your own messages`", body = ErrorBody),
        (status = 404, description = "`message not found`", body = ErrorBody),
    ),
)]
async fn delete(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiPath(id): ApiPath<MessageId>,
) -> AppResult<Json<()>> {
    messages::delete(&state.db, &state.history, &me, id).await?;
    state.events.wake();
    state.attachments.purge_message(&state.db, id).await;
    Ok(Json(()))
}

#[derive(Deserialize, ToSchema)]
struct SeenBody {
    /// Read up to and including this message.
    message_id: MessageId,
    /// The direct conversation with this user…
    friend_username: Option<String>,
    /// …or this group.
    group_chat_id: Option<GroupId>,
}

#[derive(Serialize, ToSchema)]
struct SeenAnswer {
    /// Whether the read mark moved (false when it was there or further already).
    updated: bool,
}

/// Marks a conversation read up to a message; the others hear `seen`. *Additive.*
#[utoipa::path(
    post,
    path = "/messages/seen",
    tag = "messages",
    security(("bearer" = [])),
    request_body = SeenBody,
    responses(
        (status = 200, description = "whether the mark moved", body = SeenAnswer),
        (status = 400, description = "`no addressee or groupchat specified`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `group chat not found`", body = ErrorBody),
    ),
)]
async fn seen(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiJson(body): ApiJson<SeenBody>,
) -> AppResult<Json<SeenAnswer>> {
    let conversation =
        conversations::resolve(&state, body.friend_username.as_deref(), body.group_chat_id)
            .await?
            .conversation();
    let changed = messages::mark_seen(
        &state.db,
        &state.history,
        me.user_id,
        conversation,
        body.message_id,
    )
    .await?;
    if changed {
        state.events.wake();
    }
    Ok(Json(SeenAnswer { updated: changed }))
}

/// My conversations, most recent first, with unread counts. *Additive.*
#[utoipa::path(
    get,
    path = "/conversations",
    tag = "messages",
    security(("bearer" = [])),
    responses((status = 200, description = "one row per direct conversation and group", body = Vec<ConversationSummary>)),
)]
async fn conversations(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
) -> AppResult<Json<Vec<ConversationSummary>>> {
    Ok(Json(messages::conversations(&state.db, me.user_id).await?))
}

#[derive(Deserialize, ToSchema)]
struct TypingBody {
    friend_username: Option<String>,
    group_chat_id: Option<GroupId>,
}

/// Tells the other side that I am typing (`typing`, live only). *Additive.*
#[utoipa::path(
    post,
    path = "/typing",
    tag = "messages",
    security(("bearer" = [])),
    request_body = TypingBody,
    responses(
        (status = 204, description = "told"),
        (status = 400, description = "`no addressee or groupchat specified`; not a friend", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `group chat not found`", body = ErrorBody),
        (status = 429, description = "more than 30 a minute", body = ErrorBody),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
struct CreateGroupBody {
    /// 1 to 100 characters.
    #[schema(example = "climbing")]
    group_chat_name: String,
    /// The other members (at most 100), by username.
    #[serde(default)]
    usernames: Vec<String>,
}

#[derive(Serialize, ToSchema)]
struct CreatedGroup {
    group_chat_id: GroupId,
    name: String,
}

pub fn parse_group_name(raw: &str) -> AppResult<GroupName> {
    GroupName::parse(raw).map_err(|m| AppError::unprocessable(&["body", "group_chat_name"], m))
}

/// Makes a group chat with me and the named users. The original left this a stub.
#[utoipa::path(
    post,
    path = "/group_chats/",
    tag = "group chats",
    security(("bearer" = [])),
    request_body = CreateGroupBody,
    responses(
        (status = 201, description = "the group", body = CreatedGroup),
        (status = 400, description = "a named user is not my friend", body = ErrorBody),
        (status = 404, description = "`no such user exists`", body = ErrorBody),
        (status = 409, description = "`the group is full: at most <MAX_GROUP_MEMBERS> members`", body = ErrorBody),
    ),
)]
async fn create_group(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiJson(body): ApiJson<CreateGroupBody>,
) -> AppResult<(StatusCode, Json<CreatedGroup>)> {
    let name = parse_group_name(&body.group_chat_name)?;
    if body.usernames.len() > 100 {
        return Err(AppError::unprocessable(
            &["body", "usernames"],
            "at most 100 members at once",
        ));
    }
    let members = users::all_named(&state.db, &body.usernames).await?;
    let chat = messages::create_group(
        &state.db,
        &me,
        &name,
        &members,
        state.config.max_group_members,
    )
    .await?;
    state.events.wake();
    Ok((
        StatusCode::CREATED,
        Json(CreatedGroup {
            group_chat_id: chat.group_chat_id,
            name: chat.name,
        }),
    ))
}

/// The groups I belong to, by name. *Additive.*
#[utoipa::path(
    get,
    path = "/group_chats/",
    tag = "group chats",
    security(("bearer" = [])),
    responses((status = 200, description = "my groups", body = Vec<GroupChat>)),
)]
async fn my_groups(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
) -> AppResult<Json<Vec<GroupChat>>> {
    Ok(Json(messages::my_groups(&state.db, me.user_id).await?))
}

#[derive(Serialize, ToSchema)]
struct GroupDetails {
    #[serde(flatten)]
    chat: GroupChat,
    members: Vec<UserSummary>,
}

/// A group and its members. *Additive.*
#[utoipa::path(
    get,
    path = "/group_chats/{id}",
    tag = "group chats",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = GROUP_ID)),
    responses(
        (status = 200, description = "the group", body = GroupDetails),
        (status = 404, description = "`group chat not found` (or I am not a member)", body = ErrorBody),
    ),
)]
async fn group_details(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiPath(id): ApiPath<GroupId>,
) -> AppResult<Json<GroupDetails>> {
    let chat = messages::require_member(&state.db, me.user_id, id).await?;
    let members = messages::members(&state.db, id).await?;
    Ok(Json(GroupDetails { chat, members }))
}

#[derive(Deserialize, ToSchema)]
struct RenameBody {
    /// 1 to 100 characters.
    name: String,
}

/// Renames a group I belong to (`group_chat` `renamed`). *Additive.*
#[utoipa::path(
    patch,
    path = "/group_chats/{id}",
    tag = "group chats",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = GROUP_ID)),
    request_body = RenameBody,
    responses(
        (status = 200, description = "the group", body = GroupChat),
        (status = 404, description = "`group chat not found`", body = ErrorBody),
    ),
)]
async fn rename_group(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiPath(id): ApiPath<GroupId>,
    ApiJson(body): ApiJson<RenameBody>,
) -> AppResult<Json<GroupChat>> {
    let name = parse_group_name(&body.name)?;
    let chat = messages::rename(&state.db, &me, id, &name).await?;
    state.events.wake();
    Ok(Json(chat))
}

#[derive(Deserialize, ToSchema)]
struct AddMemberBody {
    /// A friend of mine.
    username: String,
}

/// Adds a friend of mine to a group I belong to. *Additive.*
#[utoipa::path(
    post,
    path = "/group_chats/{id}/members",
    tag = "group chats",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = GROUP_ID)),
    request_body = AddMemberBody,
    responses(
        (status = 201, description = "added; the body is `null`", body = Null),
        (status = 400, description = "`already a member`; `<username> is not your friend`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `group chat not found`", body = ErrorBody),
        (status = 409, description = "`the group is full: at most <MAX_GROUP_MEMBERS> members`", body = ErrorBody),
    ),
)]
async fn add_member(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiPath(id): ApiPath<GroupId>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> AppResult<(StatusCode, Json<()>)> {
    let member = existing_user(&state, &body.username).await?;
    messages::add_member(&state.db, &me, id, &member, state.config.max_group_members).await?;
    state.events.wake();
    Ok((StatusCode::CREATED, Json(())))
}

/// Removes a member: the group's creator only. *Additive.*
#[utoipa::path(
    delete,
    path = "/group_chats/{id}/members/{username}",
    tag = "group chats",
    security(("bearer" = [])),
    params(
        ("id" = i32, Path, description = GROUP_ID),
        ("username" = String, Path, description = "the member to remove"),
    ),
    responses(
        (status = 200, description = "removed; the body is `null`", body = Null),
        (status = 403, description = "`only the group's creator can remove members`", body = ErrorBody),
        (status = 404, description = "`no such user exists`; `group chat not found`; `not a member of this group chat`", body = ErrorBody),
    ),
)]
async fn remove_member(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiPath((id, username)): ApiPath<(GroupId, String)>,
) -> AppResult<Json<()>> {
    let member = existing_user(&state, &username).await?;
    messages::remove_member(&state.db, &me, id, &member).await?;
    state.events.wake();
    Ok(Json(()))
}

/// Leaves a group; a group with nobody left is deleted. *Additive.*
#[utoipa::path(
    post,
    path = "/group_chats/{id}/leave",
    tag = "group chats",
    security(("bearer" = [])),
    params(("id" = i32, Path, description = GROUP_ID)),
    responses(
        (status = 200, description = "left; the body is `null`", body = Null),
        (status = 404, description = "`group chat not found`", body = ErrorBody),
    ),
)]
async fn leave(
    State(state): State<AppState>,
    ApiUser(me): ApiUser,
    ApiPath(id): ApiPath<GroupId>,
) -> AppResult<Json<()>> {
    messages::remove_member(&state.db, &me, id, &me.clone()).await?;
    state.events.wake();
    Ok(Json(()))
}
