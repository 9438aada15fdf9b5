//! Attachments' rows: written when an upload has been checked, linked to a message right
//! after it is sent, listed with the messages, and deleted with their objects when unsent
//! for an hour or when their message is gone (`crate::attachments` does the objects).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, QueryBuilder};
use time::PrimitiveDateTime;

use super::{
    events::Outbox,
    messages::{Message, MessageId},
    users::UserId,
};
use crate::{
    db::{Db, InsertedId},
    db_run, db_tx,
    error::{AppError, AppResult},
};

/// `image`: re-encoded, with a thumbnail, shown inline. `file`: a download.
pub const IMAGE: &str = "image";
pub const FILE: &str = "file";

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct AttachmentRow {
    pub attachment_id: i64,
    pub public_id: String,
    pub uploader_id: UserId,
    pub message_id: Option<MessageId>,
    pub name: String,
    pub content_type: String,
    pub kind: String,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub thumbnail_type: Option<String>,
    pub created_date_time: PrimitiveDateTime,
}

const COLUMNS: &str = "a.attachment_id, a.public_id, a.uploader_id, a.message_id, a.name, \
     a.content_type, a.kind, a.size, a.width, a.height, a.thumbnail_type, a.created_date_time";

impl AttachmentRow {
    pub fn is_image(&self) -> bool {
        self.kind == IMAGE
    }

    /// As the API and the live events show it.
    pub fn info(&self) -> Attachment {
        let base = format!("/api/attachments/{}", self.public_id);
        Attachment {
            id: self.public_id.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            kind: self.kind.clone(),
            size: self.size,
            width: self.width,
            height: self.height,
            thumbnail_url: self.is_image().then(|| format!("{base}/thumbnail")),
            download_url: format!("{base}/download"),
            url: base,
        }
    }
}

/// An attachment in a message object: additive to the original's fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Attachment {
    /// Unguessable; names the attachment in URLs and when sending.
    pub id: String,
    pub name: String,
    /// The type it is served as, decided from its bytes.
    #[serde(rename = "type")]
    pub content_type: String,
    /// `image` or `file`.
    pub kind: String,
    /// Bytes, as served (an image's re-encoding).
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i32>,
    /// The file (an image inline, anything else as a download).
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// The file as a download, whatever its kind.
    pub download_url: String,
}

/// A checked upload about to be stored.
pub struct NewAttachment<'a> {
    pub public_id: &'a str,
    pub uploader_id: UserId,
    pub name: &'a str,
    pub content_type: &'a str,
    pub kind: &'static str,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub thumbnail_type: Option<&'a str>,
}

pub async fn insert(db: &Db, a: &NewAttachment<'_>) -> Result<AttachmentRow, sqlx::Error> {
    let now = crate::db::now();
    let id = db_run!(db, |pool| {
        sqlx::query(
            "INSERT INTO attachment (public_id, uploader_id, message_id, position, name, content_type, \
             kind, size, width, height, thumbnail_type, created_date_time) \
             VALUES (?, ?, NULL, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.public_id)
        .bind(a.uploader_id)
        .bind(a.name)
        .bind(a.content_type)
        .bind(a.kind)
        .bind(a.size)
        .bind(a.width)
        .bind(a.height)
        .bind(a.thumbnail_type)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.inserted_id())
    })?;
    Ok(AttachmentRow {
        attachment_id: id,
        public_id: a.public_id.to_string(),
        uploader_id: a.uploader_id,
        message_id: None,
        name: a.name.to_string(),
        content_type: a.content_type.to_string(),
        kind: a.kind.to_string(),
        size: a.size,
        width: a.width,
        height: a.height,
        thumbnail_type: a.thumbnail_type.map(String::from),
        created_date_time: now,
    })
}

/// The attachments `uploader` may still send: theirs, not yet sent, uploaded after
/// `not_before`. In the order of `public_ids`; an id that is none of these is missing.
pub async fn unsent(
    db: &Db,
    uploader: UserId,
    public_ids: &[String],
    not_before: PrimitiveDateTime,
) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    if public_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<AttachmentRow> = db_run!(db, |pool| {
        let mut q = QueryBuilder::new(format!(
            "SELECT {COLUMNS} FROM attachment a WHERE a.message_id IS NULL AND a.uploader_id = "
        ));
        q.push_bind(uploader)
            .push(" AND a.created_date_time >= ")
            .push_bind(not_before)
            .push(" AND a.public_id IN (");
        let mut ids = q.separated(", ");
        for id in public_ids {
            ids.push_bind(id.as_str());
        }
        q.push(")");
        q.build_query_as::<AttachmentRow>().fetch_all(pool).await
    })?;
    Ok(public_ids
        .iter()
        .filter_map(|id| rows.iter().find(|r| &r.public_id == id).cloned())
        .collect())
}

/// Links `rows` (in order) to the message just sent and tells everyone in its
/// conversation, with `message_edited` carrying the message and its attachments (live
/// pages swap it in; API clients get the attachments). All or nothing: an attachment
/// that was linked or deleted meanwhile fails the whole link.
pub async fn link(
    db: &Db,
    history: &crate::cache::history::HistoryCache,
    message: &Message,
    rows: &[AttachmentRow],
) -> AppResult<Message> {
    let mut message = message.clone();
    message.attachments = rows.iter().map(AttachmentRow::info).collect();
    let sender = message
        .sender_id
        .ok_or_else(|| anyhow::anyhow!("a sent message without a sender"))?;
    let written = db_tx!(db, |tx| {
        for (position, row) in rows.iter().enumerate() {
            let linked = sqlx::query(
                "UPDATE attachment SET message_id = ?, position = ? \
                 WHERE attachment_id = ? AND uploader_id = ? AND message_id IS NULL",
            )
            .bind(message.message_id)
            .bind(position as i32)
            .bind(row.attachment_id)
            .bind(sender)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if linked != 1 {
                return Err(AppError::Conflict(format!(
                    "{} was sent or deleted meanwhile",
                    row.name
                )));
            }
        }
        // With its reply and mentions (`mentioned` set per reader), as the send's event.
        tx.write_events(&super::rich::message_events(
            "message_edited",
            &message,
            None,
        ))
        .await?;
        Ok::<_, AppError>(())
    });
    history.forget_message(&message);
    written?;
    Ok(message)
}

/// Fills in the attachments of `messages`: one query for all of them.
pub async fn fill(db: &Db, messages: &mut [Message]) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<MessageId> = messages.iter().map(|m| m.message_id).collect();
    let rows: Vec<AttachmentRow> = db_run!(db, |pool| {
        let mut q = QueryBuilder::new(format!(
            "SELECT {COLUMNS} FROM attachment a WHERE a.message_id IN ("
        ));
        let mut list = q.separated(", ");
        for id in &ids {
            list.push_bind(*id);
        }
        q.push(") ORDER BY a.message_id, a.position");
        q.build_query_as::<AttachmentRow>().fetch_all(pool).await
    })?;
    let mut by_message: HashMap<MessageId, Vec<Attachment>> = HashMap::new();
    for row in rows {
        if let Some(id) = row.message_id {
            by_message.entry(id).or_default().push(row.info());
        }
    }
    for message in messages {
        message.attachments = by_message.remove(&message.message_id).unwrap_or_default();
    }
    Ok(())
}

/// The attachment `viewer` may fetch: one in a message of a conversation they are in now
/// (a direct chat's two sides, a group's current members), or their own upload not yet
/// sent. Anything else is `None`, as if it did not exist.
pub async fn visible_to(
    db: &Db,
    viewer: UserId,
    public_id: &str,
) -> Result<Option<AttachmentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM attachment a LEFT JOIN message m ON m.message_id = a.message_id \
         WHERE a.public_id = ? AND ( \
           (a.message_id IS NULL AND a.uploader_id = ?) \
           OR (m.message_id IS NOT NULL AND m.group_chat_id IS NULL AND (m.sender_id = ? OR m.reciever_id = ?)) \
           OR (m.group_chat_id IS NOT NULL AND EXISTS (SELECT 1 FROM group_chat_member gm \
                 WHERE gm.group_chat_id = m.group_chat_id AND gm.member_id = ?)))"
    );
    db_run!(db, |pool| sqlx::query_as::<_, AttachmentRow>(&sql)
        .bind(public_id)
        .bind(viewer)
        .bind(viewer)
        .bind(viewer)
        .bind(viewer)
        .fetch_optional(pool)
        .await)
}

/// The attachments of one message (for deleting them with it).
pub async fn of_message(db: &Db, message_id: MessageId) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM attachment a WHERE a.message_id = ?");
    db_run!(db, |pool| sqlx::query_as::<_, AttachmentRow>(&sql)
        .bind(message_id)
        .fetch_all(pool)
        .await)
}

/// An unsent upload of `uploader`, for cancelling it.
pub async fn unsent_of(
    db: &Db,
    uploader: UserId,
    public_id: &str,
) -> Result<Option<AttachmentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM attachment a \
         WHERE a.public_id = ? AND a.uploader_id = ? AND a.message_id IS NULL"
    );
    db_run!(db, |pool| sqlx::query_as::<_, AttachmentRow>(&sql)
        .bind(public_id)
        .bind(uploader)
        .fetch_optional(pool)
        .await)
}

/// Attachments to delete: never sent and uploaded before `unsent_before`, or in a message
/// that no longer exists. At most `limit`.
pub async fn abandoned(
    db: &Db,
    unsent_before: PrimitiveDateTime,
    limit: i64,
) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM attachment a WHERE a.message_id IS NULL AND a.created_date_time < ? \
         UNION ALL \
         SELECT {COLUMNS} FROM attachment a LEFT JOIN message m ON m.message_id = a.message_id \
         WHERE a.message_id IS NOT NULL AND m.message_id IS NULL \
         LIMIT ?"
    );
    db_run!(db, |pool| sqlx::query_as::<_, AttachmentRow>(&sql)
        .bind(unsent_before)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Deletes the row once its objects are gone.
pub async fn delete(db: &Db, attachment_id: i64) -> Result<(), sqlx::Error> {
    db_run!(db, |pool| sqlx::query(
        "DELETE FROM attachment WHERE attachment_id = ?"
    )
    .bind(attachment_id)
    .execute(pool)
    .await
    .map(|_| ()))
}
