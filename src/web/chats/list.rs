//! The chats list (the left pane): every conversation with its last message, unread
//! count, presence and mute state; and the start pane shown beside it when no chat is
//! open (friends to chat with, a new group, people search for a first run).

use std::collections::HashSet;

use askama::Template;
use axum::{
    extract::{Query, State},
    response::Html,
};
use serde::Deserialize;

use crate::{
    error::AppResult,
    state::AppState,
    store::{
        events as event_store,
        friends::{self as friend_store, ListKind},
        messages::{self, ConversationSummary},
        mutes,
    },
    web::{
        avatar::{display_names, Person},
        render::{self, iso_time, short_time_label},
        Ctx, Layout,
    },
};

/// How many friends the start pane lists; the friends page pages through the rest.
const START_FRIENDS: u32 = 100;

pub(in crate::web) struct ConversationRow {
    /// `d-<user id>` or `g-<group id>`, as the conversation pane's `data-conversation`.
    pub key: String,
    pub href: String,
    pub name: String,
    pub group: bool,
    /// "You: …" when my message is the last one.
    pub preview: String,
    pub time_iso: String,
    pub time_label: String,
    pub unread: i64,
    pub muted: bool,
    pub user_id: i32,
    /// A friend's presence; `None` for groups and former friends (whose presence we
    /// are not told).
    pub online: Option<bool>,
    pub current: bool,
    /// The other user of a direct conversation: display name, handle, avatar.
    pub person: Option<Person>,
}

impl ConversationRow {
    fn new(c: ConversationSummary, me: i32) -> Self {
        let group = c.kind == "group";
        let mut preview: String = c
            .last_message
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect();
        if c.last_sender_id == Some(me) && !preview.is_empty() {
            preview = format!("You: {preview}");
        }
        let now = crate::db::now();
        Self {
            key: if group {
                format!("g-{}", c.id)
            } else {
                format!("d-{}", c.id)
            },
            href: if group {
                format!("/chats/g/{}", c.id)
            } else {
                format!("/chats/@{}", c.name)
            },
            person: (!group).then(|| Person::new(&c.name, c.display_name.as_deref())),
            name: c.name,
            group,
            preview,
            time_iso: c.last_message_at.map(iso_time).unwrap_or_default(),
            time_label: c
                .last_message_at
                .map(|t| short_time_label(t, now))
                .unwrap_or_default(),
            unread: c.unread,
            muted: false,
            user_id: if group { 0 } else { c.id },
            online: None,
            current: false,
        }
    }
}

/// The left pane: the rows, filtered by `q` when the page was asked without JavaScript.
pub(in crate::web) struct ListPane {
    pub rows: Vec<ConversationRow>,
    /// Unread messages in chats that are not muted: the tab title's count.
    pub unread_total: i64,
    pub q: String,
    /// Whether `me` has any conversation at all (before filtering).
    pub any: bool,
    pub pending_requests: i64,
}

impl ListPane {
    /// `current` is the key of the open chat, marked in the list.
    pub(in crate::web) async fn load(
        state: &AppState,
        me: i32,
        current: Option<&str>,
        q: &str,
        pending_requests: i64,
    ) -> AppResult<Self> {
        let summaries = messages::conversations(&state.db, me).await?;
        let muted = mutes::muted(&state.db, me).await?;
        let friends: HashSet<i32> = friend_store::accepted_friend_ids(&state.db, me)
            .await?
            .into_iter()
            .collect();
        let direct_friends: Vec<i32> = summaries
            .iter()
            .filter(|c| c.kind != "group" && friends.contains(&c.id))
            .map(|c| c.id)
            .collect();
        let online = event_store::online_among(&state.db, &direct_friends).await?;
        let mut rows: Vec<ConversationRow> = summaries
            .into_iter()
            .map(|c| ConversationRow::new(c, me))
            .collect();
        for row in &mut rows {
            row.muted = muted.contains(&row.key);
            row.current = current == Some(row.key.as_str());
            if !row.group && friends.contains(&row.user_id) {
                row.online = Some(online.contains(&row.user_id));
            }
        }
        let unread_total = rows.iter().filter(|r| !r.muted).map(|r| r.unread).sum();
        let any = !rows.is_empty();
        let q = q.trim().chars().take(25).collect::<String>();
        if !q.is_empty() {
            let needle = q.to_lowercase();
            rows.retain(|r| {
                r.name.to_lowercase().contains(&needle)
                    || r.person
                        .as_ref()
                        .is_some_and(|p| p.name.to_lowercase().contains(&needle))
            });
        }
        Ok(Self {
            rows,
            unread_total,
            q,
            any,
            pending_requests,
        })
    }
}

/// The unread total alone, for the navigation's badge on pages without the list.
pub(in crate::web) async fn unread_total(state: &AppState, me: i32) -> AppResult<i64> {
    let muted = mutes::muted(&state.db, me).await?;
    Ok(messages::conversations(&state.db, me)
        .await?
        .into_iter()
        .map(|c| ConversationRow::new(c, me))
        .filter(|r| !muted.contains(&r.key))
        .map(|r| r.unread)
        .sum())
}

pub(in crate::web) struct FriendRow {
    pub user_id: i32,
    pub username: String,
    pub person: Person,
    pub online: bool,
}

/// What the right pane shows when no chat is open.
pub(in crate::web) struct StartPane {
    pub friends: Vec<FriendRow>,
    /// More friends than listed here.
    pub more_friends: bool,
}

impl StartPane {
    async fn load(state: &AppState, me: i32) -> AppResult<Self> {
        let page = friend_store::list(
            &state.db,
            &state.friend_lists,
            me,
            ListKind::Friends,
            None,
            START_FRIENDS,
        )
        .await?;
        let ids: Vec<i32> = page.results.iter().map(|f| f.user_id).collect();
        let online = event_store::online_among(&state.db, &ids).await?;
        let names = display_names(state, ids.iter().copied()).await?;
        Ok(Self {
            more_friends: page.cursor.next_page.is_some(),
            friends: page
                .results
                .into_iter()
                .map(|f| FriendRow {
                    online: online.contains(&f.user_id),
                    person: Person::new(&f.username, names.get(&f.user_id).map(String::as_str)),
                    user_id: f.user_id,
                    username: f.username,
                })
                .collect(),
        })
    }
}

#[derive(Template)]
#[template(path = "pages/chats.html")]
struct ChatsPage {
    layout: Layout,
    list: ListPane,
    start: StartPane,
}

#[derive(Template)]
#[template(path = "partials/conversation_list.html")]
struct ChatsList {
    list: ListPane,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
}

pub(super) async fn chats_page(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let me = ctx.user.user_id;
    let list = ListPane::load(&state, me, None, &query.q, ctx.layout.pending_requests).await?;
    let start = StartPane::load(&state, me).await?;
    ctx.layout.section = "chats";
    ctx.layout.unread_total = Some(list.unread_total);
    render::render(&ChatsPage {
        layout: ctx.layout,
        list,
        start,
    })
}

/// The list alone, re-fetched by the page when a live event says it changed; it also
/// updates the navigation's unread count out of band.
pub(super) async fn chats_list(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let list = ListPane::load(
        &state,
        ctx.user.user_id,
        None,
        &query.q,
        ctx.layout.pending_requests,
    )
    .await?;
    render::render(&ChatsList { list })
}
