//! Rendering helpers shared by the pages, and the templates that belong to no one area.

use askama::Template;
use axum::response::Html;

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

/// A message's text as HTML: the Markdown subset of `rich::format`, everything else
/// escaped, http(s) links made clickable. Line breaks are kept by the stylesheet
/// (`white-space: pre-wrap`). Pages showing a whole message use `store::rich::html_for`,
/// which also marks its mentions.
#[allow(dead_code)]
pub fn message_html(text: &str) -> String {
    crate::rich::format::to_html(text, &[])
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
