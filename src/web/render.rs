//! Rendering helpers shared by the pages, and the templates that belong to no one area.

use std::sync::LazyLock;

use askama::Template;
use axum::response::Html;
use regex::Regex;
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

static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"https?://[^\s<>"']+"#).expect("valid regex"));

/// A message's text as HTML: everything escaped, http(s) links made clickable. Line
/// breaks are kept by the stylesheet (`white-space: pre-wrap`).
pub fn message_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut last = 0;
    for m in LINK.find_iter(text) {
        out.push_str(&escape(&text[last..m.start()]));
        // Trailing punctuation usually ends the sentence, not the link.
        let url = m
            .as_str()
            .trim_end_matches(['.', ',', ')', '!', '?', ';', ':']);
        let escaped = escape(url);
        out.push_str(&format!(r#"<a href="{escaped}" rel="noopener noreferrer nofollow" target="_blank">{escaped}</a>"#));
        out.push_str(&escape(&m.as_str()[url.len()..]));
        last = m.end();
    }
    out.push_str(&escape(&text[last..]));
    out
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_and_links_are_safe() {
        assert_eq!(
            message_html("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        let html = message_html("see https://example.com/a?b=1&c=2. ok");
        assert!(
            html.contains(
                r#"<a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow""#
            ),
            "{html}"
        );
        assert!(html.ends_with("</a>. ok"), "{html}");
        assert!(!message_html("javascript:alert(1)").contains("<a"));
    }
}
