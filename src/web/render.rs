//! Rendering helpers shared by the pages, and the templates that belong to no one area.

use askama::Template;
use axum::response::Html;
use time::PrimitiveDateTime;

use super::Layout;
use crate::error::AppError;

/// Renders a template; a template error is a 500 whose cause is logged.
pub fn render(template: &impl Template) -> Result<Html<String>, AppError> {
    template
        .render()
        .map(Html)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("template: {e}")))
}

#[derive(Template)]
#[template(path = "pages/error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
}

#[derive(Template)]
#[template(path = "partials/badge.html")]
pub struct Badge {
    pub count: i64,
}

/// A stored time (UTC) as the `datetime` of a `<time>`: pages show it in the viewer's
/// own zone and locale (`app.js`); the label the server writes is for pages read without
/// JavaScript.
pub fn iso_time(t: PrimitiveDateTime) -> String {
    format!("{}Z", crate::db::format_time(t))
}

/// `14:05 UTC`: a message's time for readers without JavaScript.
pub fn time_label(t: PrimitiveDateTime) -> String {
    format!("{:02}:{:02} UTC", t.hour(), t.minute())
}

/// The chats list's time: the time today, else the date (`12 Mar`, with the year when
/// not this year's).
pub fn short_time_label(t: PrimitiveDateTime, now: PrimitiveDateTime) -> String {
    if t.date() == now.date() {
        return format!("{:02}:{:02}", t.hour(), t.minute());
    }
    let month = &format!("{:?}", t.month())[..3];
    if t.year() == now.year() {
        format!("{} {month}", t.day())
    } else {
        format!("{} {month} {}", t.day(), t.year())
    }
}

/// The unread count beside "Chats" in the navigation; `oob` when the chats list carries
/// it out of band.
#[derive(Template)]
#[template(path = "partials/unread.html")]
pub struct Unread {
    pub count: i64,
    pub oob: bool,
}

/// HTML-escapes text (one implementation for the pages and the message formatter).
pub use crate::rich::format::escape;
