//! Attachments on the pages: how a message shows its files (`partials/attachments.html`)
//! and what the composer posts. With JavaScript (`static/attachments.js`) files are
//! uploaded as soon as they are picked, dropped or pasted, and the composer posts their
//! ids; without it, the composer's file input posts them in a multipart form.

use axum::{
    extract::{FromRequest, Request},
    Form,
};
use serde::Deserialize;

use crate::{
    attachments::{upload::is_multipart, Files},
    error::AppError,
    state::AppState,
    store::attachments::Attachment,
};

/// One attachment as a message shows it.
pub struct AttachmentView {
    pub is_image: bool,
    pub name: String,
    pub url: String,
    pub thumbnail_url: String,
    pub download_url: String,
    /// The thumbnail's size on the page.
    pub width: u32,
    pub height: u32,
    /// The image's own size.
    pub full_width: u32,
    pub full_height: u32,
    /// "2.4 MB".
    pub size: String,
    /// "PDF", "ZIP", … or "File".
    pub type_label: String,
    pub icon: &'static str,
}

impl AttachmentView {
    pub fn list(attachments: &[Attachment]) -> Vec<Self> {
        attachments.iter().map(Self::new).collect()
    }

    fn new(a: &Attachment) -> Self {
        let full = (
            a.width.unwrap_or(0).max(0) as u32,
            a.height.unwrap_or(0).max(0) as u32,
        );
        let (width, height) = crate::attachments::picture::thumbnail_size(full.0, full.1);
        let subtype = a
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .rsplit(['/', '.', '-', '+'])
            .next()
            .unwrap_or_default();
        let type_label = match a.content_type.as_str() {
            "application/octet-stream" => "File".to_string(),
            t if t.starts_with("text/plain") => "Text".to_string(),
            _ => subtype.to_uppercase(),
        };
        let icon = match a.content_type.split('/').next().unwrap_or_default() {
            _ if a.content_type == "application/pdf" => "📄",
            "audio" => "🎵",
            "video" => "🎬",
            "text" => "📝",
            "image" => "🖼️",
            _ if [
                "zip",
                "gzip",
                "x-tar",
                "x-7z-compressed",
                "x-rar-compressed",
                "x-bzip2",
                "x-xz",
            ]
            .contains(&subtype) =>
            {
                "🗜️"
            }
            _ => "📎",
        };
        Self {
            is_image: a.kind == crate::store::attachments::IMAGE,
            name: a.name.clone(),
            url: a.url.clone(),
            thumbnail_url: a.thumbnail_url.clone().unwrap_or_default(),
            download_url: a.download_url.clone(),
            width,
            height,
            full_width: full.0,
            full_height: full.1,
            size: human_size(a.size),
            type_label,
            icon,
        }
    }
}

/// Sizes as people read them: 812 bytes, 14 KB, 2.4 MB (powers of 1,000, as MAX_UPLOAD_MB).
pub fn human_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    match bytes {
        ..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{:.0} KB", b / 1e3),
        1_000_000..10_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.0} MB", b / 1e6),
    }
}

/// What the composer posts: its text, its idempotency key, and files (ids of uploads
/// made by the page's script, or files in a multipart body).
pub struct ComposerInput {
    pub content: String,
    pub client_key: Option<String>,
    pub files: Files,
    /// The message answered (set by `static/rich.js`).
    pub reply_to_message_id: Option<String>,
}

#[derive(Deserialize)]
struct ComposerForm {
    #[serde(default)]
    content: String,
    client_key: Option<String>,
    #[serde(default)]
    attachment_ids: String,
    reply_to_message_id: Option<String>,
}

impl FromRequest<AppState> for ComposerInput {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AppError> {
        if is_multipart(request.headers()) {
            let form = state
                .attachments
                .read_form(request, state)
                .await
                .map_err(for_pages)?;
            return Ok(Self {
                content: form.field("content").unwrap_or_default().to_string(),
                client_key: form.field("client_key").map(String::from),
                reply_to_message_id: form.field("reply_to_message_id").map(String::from),
                files: Files {
                    ids: Files::parse_ids(form.field("attachment_ids").unwrap_or_default()),
                    uploads: form.files,
                },
            });
        }
        let Form(form) = Form::<ComposerForm>::from_request(request, state)
            .await
            .map_err(AppError::from)
            .map_err(for_pages)?;
        Ok(Self {
            content: form.content,
            client_key: form.client_key,
            reply_to_message_id: form.reply_to_message_id,
            files: Files {
                ids: Files::parse_ids(&form.attachment_ids),
                uploads: Vec::new(),
            },
        })
    }
}

/// The pages answer bad input with 400 (htmx swaps a 422 into the page as content).
pub fn for_pages(e: AppError) -> AppError {
    match e {
        AppError::Unprocessable { msg, .. } => AppError::BadRequest(msg),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_size(812), "812 bytes");
        assert_eq!(human_size(14_200), "14 KB");
        assert_eq!(human_size(2_400_000), "2.4 MB");
        assert_eq!(human_size(25_000_000), "25 MB");
    }

    #[test]
    fn files_show_their_kind() {
        let a = Attachment {
            id: "0".repeat(32),
            name: "report.pdf".into(),
            content_type: "application/pdf".into(),
            kind: "file".into(),
            size: 1234,
            width: None,
            height: None,
            url: "/u".into(),
            thumbnail_url: None,
            download_url: "/d".into(),
        };
        let v = AttachmentView::new(&a);
        assert_eq!(
            (v.type_label.as_str(), v.icon, v.is_image),
            ("PDF", "📄", false)
        );
    }
}
