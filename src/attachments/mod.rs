//! Attachments: files and images sent with messages.
//!
//! An upload goes through four steps, and nothing is stored until the first three pass:
//!
//! 1. **Spool** (`upload`): each file part of a multipart body is streamed to a temporary
//!    file, counting bytes (over `MAX_UPLOAD_MB` is 413; a body cut off midway ends here,
//!    and the temporary file is deleted with it).
//! 2. **Check** (`kind`): the type is decided from the first bytes, never from the name or
//!    the client's `Content-Type`; the name must be one harmless path component.
//! 3. **Re-encode** (`picture`): PNG, JPEG, GIF and WebP are decoded under limits (a
//!    decompression bomb is refused before anything is allocated), turned upright, and
//!    written again without metadata, with a thumbnail. Others' downloads are only ever
//!    this re-encoding: GPS positions in a photo's EXIF never leave the server.
//! 4. **Store**: the row first (unsent, `message_id` NULL), then the objects; if storing
//!    fails, both are removed again.
//!
//! Sending links the stored rows to the message right after it is written (the group
//! commit in `store::sending` is untouched) and tells the conversation with a
//! `message_edited` event that carries the attachments. A periodic task deletes uploads
//! never sent within an hour and the files of messages that are gone.
//!
//! Files are served through the server, not by pre-signed S3 URLs: every request is
//! checked against the conversation's current members (a pre-signed URL would outlive a
//! member's removal), the headers that keep a file from running as a page
//! (`Content-Disposition`, `nosniff`, a sandboxing CSP) are ours to set, the bucket stays
//! private with no public endpoint, and pages keep `img-src 'self'`.

pub mod kind;
pub mod picture;
pub mod storage;
pub mod upload;

use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::{
    kind::{Detected, FileName},
    picture::{PictureError, Processed},
    storage::{Blob, BlobStore, KEY_PREFIX},
};
use crate::{
    config::Config,
    db::Db,
    domain::MessageContent,
    error::{AppError, AppResult},
    state::AppState,
    store::{
        attachments::{self as rows, AttachmentRow, NewAttachment},
        messages::{Conversation, Message},
        rich::RichSend,
        sending::Outgoing,
        users::{UserId, UserSummary},
    },
};

/// Files one message may carry.
pub const MAX_FILES: usize = 10;
/// Uploads never sent are deleted after this long.
pub const UNSENT_LIFETIME: Duration = Duration::from_secs(3600);
/// Uploads may be sent for this long: well inside [`UNSENT_LIFETIME`], so the clean-up
/// never deletes one that a send is about to link.
const SEND_WINDOW: Duration = Duration::from_secs(50 * 60);
const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);
const SWEEP_BATCH: i64 = 200;
/// A multipart body may exceed its files by this much (field headers, the text).
const FORM_OVERHEAD: u64 = 1024 * 1024;

/// The service the handlers use; cheap to clone.
#[derive(Clone)]
pub struct Attachments {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn BlobStore>,
    max_file_bytes: u64,
    /// Where uploads are spooled and images re-encoded (`TMPDIR`).
    spool: PathBuf,
    /// Images decoded at once: each may take [`picture::MAX_DECODED_BYTES`] and more.
    decoding: Arc<Semaphore>,
}

/// Which of an attachment's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// An image shown inline, or any other file as a download.
    Inline,
    Thumbnail,
    /// Any attachment as a download.
    Download,
}

/// A checked upload, in temporary files until it is stored.
pub struct Prepared {
    name: FileName,
    body: PreparedBody,
}

enum PreparedBody {
    Image(Processed),
    File {
        spooled: upload::TempFile,
        content_type: &'static str,
        size: u64,
    },
}

/// What a request attaches to a message: uploads it made before (their ids) and files
/// in its own body.
#[derive(Default)]
pub struct Files {
    pub ids: Vec<String>,
    pub uploads: Vec<Prepared>,
}

impl Files {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.uploads.is_empty()
    }

    /// Ids as a form sends them: comma- or space-separated.
    pub fn parse_ids(raw: &str) -> Vec<String> {
        raw.split([',', ' '])
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(String::from)
            .collect()
    }
}

/// An object that a download streams.
pub struct Download {
    pub row: AttachmentRow,
    pub content_type: String,
    /// `inline` or `attachment`.
    pub disposition: &'static str,
    pub etag: String,
    pub blob: Option<Blob>,
}

fn key(public_id: &str, object: &str) -> String {
    format!("{KEY_PREFIX}{public_id}/{object}")
}

/// The objects an attachment has: an image's re-encoding and thumbnail, or the file.
fn keys(row: &AttachmentRow) -> Vec<String> {
    if row.is_image() {
        vec![key(&row.public_id, "full"), key(&row.public_id, "thumb")]
    } else {
        vec![key(&row.public_id, "file")]
    }
}

fn is_public_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Attachments {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            inner: Arc::new(Inner {
                storage: storage::from_config(&config.file_storage)?,
                max_file_bytes: config.max_upload_bytes,
                spool: std::env::temp_dir(),
                decoding: Arc::new(Semaphore::new((cores / 2).max(1))),
            }),
        })
    }

    /// Where the files go, for the start-up log.
    pub fn describe(&self) -> String {
        self.inner.storage.describe()
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.inner.max_file_bytes
    }

    /// The largest body an upload route reads: ten files at the limit, and the form.
    pub fn max_request_bytes(&self) -> u64 {
        self.inner.max_file_bytes * MAX_FILES as u64 + FORM_OVERHEAD
    }

    /// Step 2 and 3 for one spooled file: its type from its bytes, an image re-encoded.
    pub async fn check(&self, name: FileName, spooled: upload::Spooled) -> AppResult<Prepared> {
        let format = match kind::detect(&spooled.head) {
            Detected::File(content_type) => {
                return Ok(Prepared {
                    name,
                    body: PreparedBody::File {
                        spooled: spooled.file,
                        content_type,
                        size: spooled.size,
                    },
                })
            }
            Detected::Image(format) => format,
        };
        // The permit travels with the work: should the request go away, the decoding
        // still counts until it ends.
        let permit = self
            .inner
            .decoding
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("image decoding closed"))?;
        let spool = self.inner.spool.clone();
        let processed = crate::background::spawn(move || {
            let _permit = permit;
            // `spooled` moves in, so the source is deleted only once decoding is done.
            picture::process(spooled.file.path(), format, &spool)
        })
        .await?;
        match processed {
            Ok(image) => Ok(Prepared {
                name,
                body: PreparedBody::Image(image),
            }),
            Err(e @ (PictureError::TooLarge | PictureError::Damaged)) => Err(
                AppError::unprocessable(&["body", "files"], format!("{name}: {e}")),
            ),
            Err(PictureError::Io(e)) => Err(anyhow::Error::new(e).context("re-encoding").into()),
        }
    }

    /// Step 4: the row, then the objects. Runs to its end even when the request is
    /// dropped, so that nothing is left half-stored; an upload whose client went away is
    /// an unsent one, deleted within the hour.
    pub async fn store(
        &self,
        db: &Db,
        uploader: UserId,
        prepared: Prepared,
    ) -> AppResult<AttachmentRow> {
        let this = self.clone();
        let db = db.clone();
        tokio::spawn(async move { this.store_now(&db, uploader, prepared).await })
            .await
            .map_err(|e| anyhow::anyhow!("storing an attachment panicked: {e}"))?
    }

    async fn store_now(
        &self,
        db: &Db,
        uploader: UserId,
        prepared: Prepared,
    ) -> AppResult<AttachmentRow> {
        let public_id = uuid::Uuid::new_v4().simple().to_string();
        let name = prepared.name.as_str();
        let new = match &prepared.body {
            PreparedBody::Image(p) => NewAttachment {
                public_id: &public_id,
                uploader_id: uploader,
                name,
                content_type: p.full_type,
                kind: rows::IMAGE,
                size: p
                    .full
                    .as_file()
                    .metadata()
                    .map_err(anyhow::Error::new)?
                    .len() as i64,
                width: Some(p.width as i32),
                height: Some(p.height as i32),
                thumbnail_type: Some(p.thumbnail_type),
            },
            PreparedBody::File {
                content_type, size, ..
            } => NewAttachment {
                public_id: &public_id,
                uploader_id: uploader,
                name,
                content_type,
                kind: rows::FILE,
                size: *size as i64,
                width: None,
                height: None,
                thumbnail_type: None,
            },
        };
        let row = rows::insert(db, &new).await?;
        let storage = &self.inner.storage;
        let stored = match &prepared.body {
            PreparedBody::Image(p) => {
                let (full_key, thumb_key) = (key(&public_id, "full"), key(&public_id, "thumb"));
                let full = storage.put_file(&full_key, p.full.path());
                let thumb = storage.put_bytes(&thumb_key, Bytes::from(p.thumbnail.clone()));
                tokio::try_join!(full, thumb).map(|_| ())
            }
            PreparedBody::File { spooled, .. } => {
                storage
                    .put_file(&key(&public_id, "file"), spooled.path())
                    .await
            }
        };
        if let Err(e) = stored {
            tracing::error!(error = ?e, "storing an attachment failed");
            if let Err(e) = self.remove(db, &row).await {
                tracing::warn!(error = ?e, "removing a half-stored attachment failed; the clean-up will retry");
            }
            return Err(AppError::Unavailable(
                "the file store is unavailable; try again later".into(),
            ));
        }
        tracing::info!(attachment = %public_id, kind = %row.kind, size = row.size, "attachment stored");
        Ok(row)
    }

    /// Deletes an attachment's objects, then its row (the row stays, for the next
    /// clean-up, if the objects cannot be deleted now).
    async fn remove(&self, db: &Db, row: &AttachmentRow) -> anyhow::Result<()> {
        for key in keys(row) {
            self.inner.storage.delete(&key).await?;
        }
        rows::delete(db, row.attachment_id).await?;
        Ok(())
    }

    async fn remove_all(&self, db: &Db, rows: &[AttachmentRow]) -> usize {
        let mut removed = 0;
        for row in rows {
            match self.remove(db, row).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(error = ?e, attachment = %row.public_id, "deleting an attachment failed; the clean-up will retry")
                }
            }
        }
        removed
    }

    /// Deletes the files of a message that was just deleted (the clean-up would find them
    /// too; this is at once).
    pub async fn purge_message(&self, db: &Db, message_id: i32) {
        match rows::of_message(db, message_id).await {
            Ok(rows) => {
                self.remove_all(db, &rows).await;
            }
            Err(e) => tracing::warn!(error = %e, "listing a deleted message's attachments failed"),
        }
    }

    /// Cancels an upload its uploader has not sent.
    pub async fn cancel(&self, db: &Db, uploader: UserId, public_id: &str) -> AppResult<()> {
        let row = match is_public_id(public_id) {
            true => rows::unsent_of(db, uploader, public_id).await?,
            false => None,
        };
        let row = row.ok_or_else(|| AppError::not_found("attachment not found"))?;
        self.remove(db, &row).await?;
        Ok(())
    }

    /// One pass of the clean-up: uploads unsent for `unsent_for`, and attachments of
    /// messages that are gone. Returns how many were deleted.
    pub async fn sweep(&self, db: &Db, unsent_for: Duration) -> anyhow::Result<usize> {
        let cutoff = crate::db::now() - unsent_for;
        let mut total = 0;
        loop {
            let batch = rows::abandoned(db, cutoff, SWEEP_BATCH).await?;
            let removed = self.remove_all(db, &batch).await;
            total += removed;
            // A short batch was the last; a batch that removed nothing would repeat.
            if (batch.len() as i64) < SWEEP_BATCH || removed == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs [`Attachments::sweep`] every ten minutes until shutdown (on every process:
    /// deleting twice is harmless).
    pub fn start_sweeper(&self, db: Db, shutdown: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => match this.sweep(&db, UNSENT_LIFETIME).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "deleted unsent and orphaned attachments"),
                        Err(e) => tracing::warn!(error = ?e, "attachment clean-up failed"),
                    },
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// The object `viewer` asks for, when they may see it: 404 otherwise, whether it
    /// exists or not. `if_none_match`: the client's cached copy is current, so no body.
    pub async fn open(
        &self,
        db: &Db,
        viewer: UserId,
        public_id: &str,
        variant: Variant,
        if_none_match: Option<&str>,
    ) -> AppResult<Download> {
        let not_found = || AppError::not_found("attachment not found");
        if !is_public_id(public_id) {
            return Err(not_found());
        }
        let row = rows::visible_to(db, viewer, public_id)
            .await?
            .ok_or_else(not_found)?;
        let (object, content_type, disposition) = match (variant, row.is_image()) {
            (Variant::Thumbnail, true) => (
                "thumb",
                row.thumbnail_type.clone().unwrap_or_default(),
                "inline",
            ),
            (Variant::Thumbnail, false) => return Err(not_found()),
            (Variant::Inline, true) => ("full", row.content_type.clone(), "inline"),
            (Variant::Download, true) => ("full", row.content_type.clone(), "attachment"),
            (_, false) => ("file", row.content_type.clone(), "attachment"),
        };
        let etag = format!("\"{}-{object}\"", row.public_id);
        if if_none_match.is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag)) {
            return Ok(Download {
                row,
                content_type,
                disposition,
                etag,
                blob: None,
            });
        }
        let blob = self
            .inner
            .storage
            .get(&key(&row.public_id, object))
            .await?
            .ok_or_else(not_found)?;
        Ok(Download {
            row,
            content_type,
            disposition,
            etag,
            blob: Some(blob),
        })
    }

    /// Stores a request's uploads for later sending (the upload endpoint).
    pub async fn store_all(
        &self,
        db: &Db,
        uploader: UserId,
        uploads: Vec<Prepared>,
    ) -> AppResult<Vec<AttachmentRow>> {
        let mut stored = Vec::with_capacity(uploads.len());
        for prepared in uploads {
            match self.store(db, uploader, prepared).await {
                Ok(row) => stored.push(row),
                Err(e) => {
                    // All of the request's files, or none.
                    self.remove_all(db, &stored).await;
                    return Err(e);
                }
            }
        }
        Ok(stored)
    }
}

/// What the sender wrote, as the composer or the API received it.
pub struct Draft<'a> {
    pub text: &'a str,
    /// The idempotency key: the same key from the same sender posts once.
    pub client_key: Option<String>,
    /// The message it answers (its mentions are found when it is sent).
    pub rich: RichSend,
}

/// Sends a message, with files when there are any: the one send path of the pages and the
/// API. Without files it is exactly the plain send (the text is required); with files the
/// text is an optional caption, the named uploads are claimed and the request's own files
/// stored before the send, and all of them linked right after it. A send that fails, or
/// that repeats an earlier one (its `client_key`), stores nothing new.
pub async fn send(
    state: &AppState,
    sender: UserSummary,
    to: Conversation,
    draft: Draft<'_>,
    files: Files,
    bad_text: impl Fn(String) -> AppError,
) -> AppResult<(Message, bool)> {
    let Draft {
        text,
        client_key,
        rich,
    } = draft;
    let attachments = &state.attachments;
    let db = &state.db;
    if files.is_empty() {
        let content = MessageContent::parse(text).map_err(bad_text)?;
        return state
            .sends
            .send(
                db,
                Outgoing {
                    sender,
                    to,
                    content,
                    client_key,
                    rich,
                },
            )
            .await;
    }
    let content = MessageContent::caption(text).map_err(bad_text)?;
    let mut ids = files.ids;
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    if ids.len() + files.uploads.len() > MAX_FILES {
        return Err(AppError::unprocessable(
            &["body", "files"],
            format!("at most {MAX_FILES} files per message"),
        ));
    }
    let not_before = crate::db::now() - SEND_WINDOW;
    let mut claimed = rows::unsent(db, sender.user_id, &ids, not_before).await?;
    if claimed.len() != ids.len() {
        return Err(AppError::unprocessable(
            &["body", "attachment_ids"],
            "an attachment was not found, was already sent, or is more than 50 minutes old: upload it again",
        ));
    }
    let stored_here = attachments
        .store_all(db, sender.user_id, files.uploads)
        .await?;
    claimed.extend(stored_here.iter().cloned());
    let outgoing = Outgoing {
        sender,
        to,
        content,
        client_key,
        rich,
    };
    match state.sends.send(db, outgoing).await {
        Ok((message, true)) => {
            state.events.wake();
            match rows::link(db, &state.history, &message, &claimed).await {
                Ok(message) => Ok((message, true)),
                Err(e) => {
                    // The message went out; its files did not (one was sent or cancelled
                    // by a concurrent request). Say so rather than pretend.
                    attachments.remove_all(db, &stored_here).await;
                    Err(e)
                }
            }
        }
        other => {
            attachments.remove_all(db, &stored_here).await;
            other
        }
    }
}

/// Whether a request may carry files: the routes that read multipart bodies (the API's
/// upload and send, the composer's send). The body limit is decided before routing, so
/// this list sits beside the routes' own knowledge of it, and a test holds them together.
pub fn accepts_uploads(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::POST
        && (matches!(
            path,
            "/api/attachments" | "/api/messages" | "/api/messages/"
        ) || (path.starts_with("/chats/") && path.ends_with("/messages")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_the_upload_routes_take_large_bodies() {
        for path in [
            "/api/attachments",
            "/api/messages/",
            "/chats/@bob/messages",
            "/chats/g/7/messages",
        ] {
            assert!(accepts_uploads(&Method::POST, path), "{path}");
        }
        assert!(!accepts_uploads(&Method::GET, "/api/attachments"));
        for path in [
            "/login",
            "/api/messages/seen",
            "/chats/@bob/typing",
            "/messages/1/edit",
        ] {
            assert!(!accepts_uploads(&Method::POST, path), "{path}");
        }
    }

    #[test]
    fn ids_come_comma_or_space_separated() {
        assert_eq!(Files::parse_ids(" a, b c,,"), ["a", "b", "c"]);
        assert!(is_public_id(&uuid::Uuid::new_v4().simple().to_string()));
        assert!(!is_public_id("../../etc/passwd"));
    }
}
