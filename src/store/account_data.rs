//! Leaving: everything stored about one user, for "download my data", and deleting the
//! account.
//!
//! What deletion keeps and removes (README, "Leaving"): direct messages to and from the
//! account are removed with it (nobody can open that conversation any more); messages it
//! posted in group chats stay for the other members, shown as from "deleted user"
//! (`sender_id` becomes NULL, as the schema allows). Friendships, requests, blocks, group
//! memberships, sessions, tokens and pending live events go. A group left empty is
//! deleted with its messages; a group the account created passes to its longest-standing
//! remaining member (the lowest user id) so that someone can still manage it.

use serde::Serialize;
use serde_json::json;

use super::{
    events::{NewEvent, Outbox},
    messages::{GroupChat, GroupId, Message, MESSAGE_COLUMNS},
    users::{PublicProfile, User, UserId, UserSummary},
};
use crate::{
    db::{self, Db},
    db_run, db_tx,
    error::AppResult,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupExport {
    #[serde(flatten)]
    pub chat: GroupChat,
    pub members: Vec<UserSummary>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountExport {
    pub exported_at: String,
    pub profile: ProfileExport,
    pub friends: Vec<UserSummary>,
    pub requests_received: Vec<UserSummary>,
    pub requests_sent: Vec<UserSummary>,
    pub blocked: Vec<UserSummary>,
    pub groups: Vec<GroupExport>,
    /// Every message the user sent, every direct message they received, and every
    /// message of the groups they belong to, oldest first.
    pub messages: Vec<Message>,
    pub api_tokens: Vec<super::api_tokens::ApiToken>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileExport {
    #[serde(flatten)]
    pub profile: PublicProfile,
    pub display_name: Option<String>,
}

/// Messages per query filling in files, replies, mentions and reactions.
const FILL_CHUNK: usize = 500;

async fn list(db: &Db, me: UserId, code: &str) -> Result<Vec<UserSummary>, sqlx::Error> {
    db_run!(db, |pool| {
        sqlx::query_as::<_, UserSummary>(
            "SELECT other_id AS user_id, other_username AS username FROM friend_list \
             WHERE owner_id = ? AND list = ? ORDER BY other_username",
        )
        .bind(me)
        .bind(code)
        .fetch_all(pool)
        .await
    })
}

/// Everything stored about `user` that is theirs to take.
#[tracing::instrument(skip_all, fields(user_id = user.user_id))]
pub async fn export(db: &Db, user: &User) -> AppResult<AccountExport> {
    let me = user.user_id;
    let mut groups = Vec::new();
    for chat in super::messages::my_groups(db, me).await? {
        let members = super::messages::members(db, chat.group_chat_id).await?;
        groups.push(GroupExport { chat, members });
    }
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM message m LEFT JOIN user su ON su.user_id = m.sender_id \
         WHERE m.sender_id = ? \
            OR (m.group_chat_id IS NULL AND m.reciever_id = ?) \
            OR m.group_chat_id IN (SELECT group_chat_id FROM group_chat_member WHERE member_id = ?) \
         ORDER BY m.message_id"
    );
    let mut messages = db_run!(db, |pool| {
        sqlx::query_as::<_, Message>(&sql)
            .bind(me)
            .bind(me)
            .bind(me)
            .fetch_all(pool)
            .await
    })?;
    // With what each message carries beyond its text, as the API shows it.
    for chunk in messages.chunks_mut(FILL_CHUNK) {
        super::attachments::fill(db, chunk).await?;
        super::rich::fill(db, me, chunk).await?;
    }
    Ok(AccountExport {
        exported_at: format!("{}Z", db::format_time(db::now())),
        profile: ProfileExport {
            profile: PublicProfile::from(user),
            display_name: user.display_name.clone(),
        },
        friends: list(db, me, "F").await?,
        requests_received: list(db, me, "I").await?,
        requests_sent: list(db, me, "O").await?,
        blocked: list(db, me, "B").await?,
        groups,
        messages,
        api_tokens: super::api_tokens::for_user(db, me).await?,
    })
}

/// The event an account deleted writes to itself.
pub const ACCOUNT_DELETED: &str = "account_deleted";

/// Deletes the account as the module's notes say, in one transaction, and tells the
/// people it leaves (friends, requesters, group members) through live events.
#[tracing::instrument(skip_all, fields(user_id = user.user_id))]
pub async fn delete(db: &Db, user: &User) -> AppResult<()> {
    let me = user.user_id;
    db_tx!(db, |tx| {
        let groups: Vec<GroupId> = sqlx::query_scalar(
            "SELECT group_chat_id FROM group_chat_member WHERE member_id = ? ORDER BY group_chat_id",
        )
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
        // Everyone whose lists show me hears that the friendship is gone: friends, pending
        // requests either way, and whoever blocked me (`X`: I am on their blocked list).
        let others: Vec<UserId> = sqlx::query_scalar(
            "SELECT other_id FROM friend_list WHERE owner_id = ? AND list IN ('F', 'I', 'O', 'X')",
        )
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM message WHERE group_chat_id IS NULL AND (sender_id = ? OR reciever_id = ?)",
        )
        .bind(me)
        .bind(me)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE message SET sender_id = NULL, client_key = NULL WHERE sender_id = ?")
            .bind(me)
            .execute(&mut *tx)
            .await?;
        // Their group messages stay searchable, as from "deleted user".
        sqlx::query("UPDATE message_search SET sender_id = NULL WHERE sender_id = ?")
            .bind(me)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM group_chat_member WHERE member_id = ?")
            .bind(me)
            .execute(&mut *tx)
            .await?;
        let mut events = Vec::new();
        for group in groups {
            let remaining: Vec<UserId> = sqlx::query_scalar(
                "SELECT member_id FROM group_chat_member WHERE group_chat_id = ? ORDER BY member_id",
            )
            .bind(group)
            .fetch_all(&mut *tx)
            .await?;
            let Some(&successor) = remaining.first() else {
                sqlx::query("DELETE FROM message WHERE group_chat_id = ?")
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM group_chat WHERE group_chat_id = ?")
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
                continue;
            };
            sqlx::query(
                "UPDATE group_chat SET creator_id = ? WHERE group_chat_id = ? AND creator_id = ?",
            )
            .bind(successor)
            .bind(group)
            .bind(me)
            .execute(&mut *tx)
            .await?;
            let name: String =
                sqlx::query_scalar("SELECT name FROM group_chat WHERE group_chat_id = ?")
                    .bind(group)
                    .fetch_one(&mut *tx)
                    .await?;
            let left = json!({ "group_chat_id": group, "name": name, "change": "member_left", "user_id": me, "username": user.username });
            events.push(NewEvent::to_group(group, "group_chat", &left));
        }
        let removed = json!({ "user_id": me, "username": user.username, "status": "removed" });
        events.extend(NewEvent::to_each("friendship", &others, &removed));
        // To the account itself: every process ends its open streams, and empties its
        // history cache (messages changed that no other event names: reactions and
        // mentions in groups it had left).
        events.push(NewEvent::new(
            me,
            ACCOUNT_DELETED,
            &json!({ "user_id": me }),
        ));
        for sql in [
            // Their rows, and their direct chats' (whose messages went above).
            "DELETE FROM event WHERE user_id = ? OR also_user_id = ?",
            "DELETE FROM friendship WHERE requester_id = ? OR addressee_id = ?",
            "DELETE FROM friend_list WHERE owner_id = ? OR other_id = ?",
        ] {
            sqlx::query(sql).bind(me).bind(me).execute(&mut *tx).await?;
        }
        for sql in [
            "DELETE FROM presence WHERE user_id = ?",
            "DELETE FROM browser_session WHERE user_id = ?",
            "DELETE FROM api_token WHERE user_id = ?",
            "DELETE FROM account_token WHERE user_id = ?",
            "DELETE FROM unverified_email WHERE user_id = ?",
            "DELETE FROM user WHERE user_id = ?",
        ] {
            sqlx::query(sql).bind(me).execute(&mut *tx).await?;
        }
        tx.write_events(&events).await?;
        Ok(())
    })
}
