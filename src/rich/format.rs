//! A message's text as HTML: a small, safe Markdown subset.
//!
//! The subset: **bold**, *italic*, ~~strikethrough~~, `inline code`, fenced code blocks
//! (monospace, scrolling sideways), `>` quotes and links (bare `http(s)://` addresses
//! are linked as before; `[text](https://…)` too). Everything else (headings, lists,
//! images, tables, raw HTML) shows as typed. pulldown-cmark parses; our renderer emits
//! only the subset's tags (raw HTML is never passed through, it is escaped as text);
//! ammonia then cleans the result against the same short list of tags, attributes and
//! URL schemes, so a renderer bug cannot become markup injection.
//!
//! Plain text renders exactly as it did before formatting existed: no paragraph tags
//! (the stylesheet keeps line breaks, `white-space: pre-wrap`), text escaped, links
//! linked.

use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    sync::LazyLock,
};

use pulldown_cmark::{CodeBlockKind, Event, LinkType, Options, Parser, Tag, TagEnd};
use regex::Regex;

static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"https?://[^\s<>"']+"#).expect("valid regex"));

const LINK_REL: &str = "noopener noreferrer nofollow";

/// A user a message mentions, as the renderer highlights them.
#[derive(Debug, Clone)]
pub struct MentionMark {
    pub username: String,
    /// The reader is the one mentioned: highlighted more strongly.
    pub me: bool,
}

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::empty();
    b.tags(HashSet::from([
        "a",
        "strong",
        "em",
        "del",
        "code",
        "pre",
        "blockquote",
        "span",
        "br",
    ]))
    .tag_attributes(HashMap::from([(
        "a",
        HashSet::from(["href", "rel", "target"]),
    )]))
    .allowed_classes(HashMap::from([
        ("span", HashSet::from(["mention", "me"])),
        ("pre", HashSet::from(["code-block"])),
    ]))
    .url_schemes(HashSet::from(["http", "https", "mailto"]))
    .url_relative(ammonia::UrlRelative::Deny)
    // Our renderer writes rel itself, before target, as the pages always had it.
    .link_rel(None)
    .strip_comments(true);
    b
});

/// The HTML of a message's text; `mentions` are highlighted where typed as `@name`.
pub fn to_html(text: &str, mentions: &[MentionMark]) -> String {
    let raw = render(text, mentions);
    CLEANER.clean(&raw).to_string()
}

/// What kind of block the renderer last wrote, to separate blocks as typed.
#[derive(PartialEq, Clone, Copy)]
enum Last {
    Nothing,
    Inline,
    Block,
}

struct Renderer<'t> {
    src: &'t str,
    mentions: &'t [MentionMark],
    out: String,
    /// Text events are gathered and written together: a link may span several.
    pending: String,
    /// Inside a link or code: no linking of addresses, no mentions.
    plain_depth: usize,
    /// Per container (the message, each quote): what was last written in it.
    last: Vec<Last>,
}

fn render(src: &str, mentions: &[MentionMark]) -> String {
    let mut r = Renderer {
        src,
        mentions,
        out: String::with_capacity(src.len() + 32),
        pending: String::new(),
        plain_depth: 0,
        last: vec![Last::Nothing],
    };
    let parser = Parser::new_ext(src, Options::ENABLE_STRIKETHROUGH).into_offset_iter();
    // While Some(depth): inside a construct outside the subset, already written as typed.
    let mut skipping: Option<usize> = None;
    for (event, range) in parser {
        if let Some(depth) = skipping.as_mut() {
            match event {
                Event::Start(_) => *depth += 1,
                Event::End(_) => {
                    *depth -= 1;
                    if *depth == 0 {
                        skipping = None;
                    }
                }
                _ => {}
            }
            continue;
        }
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => r.start_inline_block(),
                Tag::Strong => r.open("<strong>"),
                Tag::Emphasis => r.open("<em>"),
                Tag::Strikethrough => r.open("<del>"),
                Tag::BlockQuote(_) => {
                    r.start_block();
                    r.open("<blockquote>");
                    r.last.push(Last::Nothing);
                }
                Tag::CodeBlock(CodeBlockKind::Fenced(_)) => {
                    r.start_block();
                    r.open(r#"<pre class="code-block"><code>"#);
                    r.plain_depth += 1;
                }
                Tag::Link {
                    link_type,
                    dest_url,
                    ..
                } if matches!(
                    link_type,
                    LinkType::Inline | LinkType::Autolink | LinkType::Email
                ) && safe_url(&dest_url, link_type) =>
                {
                    let href = if link_type == LinkType::Email {
                        format!("mailto:{dest_url}")
                    } else {
                        dest_url.to_string()
                    };
                    r.open(&format!(
                        r#"<a href="{}" rel="{LINK_REL}" target="_blank">"#,
                        escape(&href)
                    ));
                    r.plain_depth += 1;
                }
                // Outside the subset: the construct's source, as typed.
                other => {
                    let block = is_block(&other);
                    if block {
                        r.start_inline_block();
                    }
                    r.as_typed(range);
                    skipping = Some(1);
                }
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => r.flush(),
                TagEnd::Strong => r.close("</strong>"),
                TagEnd::Emphasis => r.close("</em>"),
                TagEnd::Strikethrough => r.close("</del>"),
                TagEnd::BlockQuote(_) => {
                    r.close("</blockquote>");
                    r.last.pop();
                    r.set_last(Last::Block);
                }
                TagEnd::CodeBlock => {
                    r.plain_depth = r.plain_depth.saturating_sub(1);
                    // The fence's last line break is not part of the code.
                    if r.pending.ends_with('\n') {
                        r.pending.pop();
                    }
                    r.close("</code></pre>");
                    r.set_last(Last::Block);
                }
                TagEnd::Link => {
                    r.plain_depth = r.plain_depth.saturating_sub(1);
                    r.close("</a>");
                }
                _ => r.flush(),
            },
            Event::Text(text) => r.pending.push_str(&text),
            Event::Code(code) => {
                r.flush();
                r.out.push_str("<code>");
                r.out.push_str(&escape(&code));
                r.out.push_str("</code>");
            }
            Event::SoftBreak | Event::HardBreak => r.pending.push('\n'),
            // Raw HTML, rules, anything else: shown as typed.
            Event::Html(_) | Event::Rule => {
                r.start_inline_block();
                r.as_typed(range);
            }
            Event::InlineHtml(_) | Event::FootnoteReference(_) | Event::TaskListMarker(_) => {
                r.as_typed(range)
            }
            Event::InlineMath(_) | Event::DisplayMath(_) => r.as_typed(range),
        }
    }
    r.flush();
    r.out
}

fn is_block(tag: &Tag) -> bool {
    !matches!(
        tag,
        Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Link { .. }
            | Tag::Image { .. }
            | Tag::Superscript
            | Tag::Subscript
    )
}

/// Only web and mail links become links; anything else shows as typed.
fn safe_url(url: &str, kind: LinkType) -> bool {
    match kind {
        LinkType::Email => !url.contains(['"', '<', '>']),
        _ => {
            let lower = url.to_ascii_lowercase();
            lower.starts_with("http://") || lower.starts_with("https://")
        }
    }
}

impl Renderer<'_> {
    fn set_last(&mut self, last: Last) {
        if let Some(l) = self.last.last_mut() {
            *l = last;
        }
    }

    /// A paragraph (or a construct shown as typed) begins: an empty line separates it
    /// from the text before it, as it was typed.
    fn start_inline_block(&mut self) {
        self.flush();
        if self.last.last() == Some(&Last::Inline) {
            self.out.push_str("\n\n");
        }
        self.set_last(Last::Inline);
    }

    /// A quote or code block begins: it breaks the line by itself.
    fn start_block(&mut self) {
        self.flush();
        self.set_last(Last::Block);
    }

    fn open(&mut self, html: &str) {
        self.flush();
        if self.last.last() == Some(&Last::Nothing) {
            self.set_last(Last::Inline);
        }
        self.out.push_str(html);
    }

    fn close(&mut self, html: &str) {
        self.flush();
        self.out.push_str(html);
    }

    fn as_typed(&mut self, range: Range<usize>) {
        let text = self.src[range].trim_end_matches('\n');
        self.pending.push_str(text);
        self.flush();
    }

    /// Writes the gathered text: escaped, with addresses linked and mentions marked.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        if self.plain_depth > 0 {
            self.out.push_str(&escape(&text));
        } else {
            let html = linkify(&text, self.mentions);
            self.out.push_str(&html);
        }
        if self.last.last() == Some(&Last::Nothing) {
            self.set_last(Last::Inline);
        }
    }
}

/// Escapes `text`, links its addresses and marks its mentions.
fn linkify(text: &str, mentions: &[MentionMark]) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut last = 0;
    for m in LINK.find_iter(text) {
        out.push_str(&mark_mentions(&text[last..m.start()], mentions));
        // Trailing punctuation usually ends the sentence, not the link.
        let url = m
            .as_str()
            .trim_end_matches(['.', ',', ')', '!', '?', ';', ':']);
        let escaped = escape(url);
        out.push_str(&format!(
            r#"<a href="{escaped}" rel="{LINK_REL}" target="_blank">{escaped}</a>"#
        ));
        out.push_str(&escape(&m.as_str()[url.len()..]));
        last = m.end();
    }
    out.push_str(&mark_mentions(&text[last..], mentions));
    out
}

/// Escapes `text` and wraps each `@name` of a mentioned user in a highlight.
fn mark_mentions(text: &str, mentions: &[MentionMark]) -> String {
    if mentions.is_empty() || !text.contains('@') {
        return escape(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut last = 0;
    for found in super::mentions::find(text) {
        let Some(who) = mentions
            .iter()
            .find(|m| m.username.eq_ignore_ascii_case(found.username))
        else {
            continue;
        };
        out.push_str(&escape(&text[last..found.range.start]));
        out.push_str(if who.me {
            r#"<span class="mention me">"#
        } else {
            r#"<span class="mention">"#
        });
        out.push_str(&escape(&text[found.range.clone()]));
        out.push_str("</span>");
        last = found.range.end;
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

/// The first line of a message with text, shortened, as a reply's quote shows it.
pub fn first_line(text: &str, max_chars: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut short: String = line.chars().take(max_chars).collect();
    if line.chars().count() > max_chars || text.trim().lines().count() > 1 {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> String {
        to_html(s, &[])
    }

    #[test]
    fn plain_text_is_escaped_and_links_are_safe() {
        assert_eq!(
            html("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        let h = html("see https://example.com/a?b=1&c=2. ok");
        assert!(
            h.contains(r#"<a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow" target="_blank">"#),
            "{h}"
        );
        assert!(h.ends_with("</a>. ok"), "{h}");
        assert_eq!(html("line one\nline two"), "line one\nline two");
        assert_eq!(html("one\n\ntwo"), "one\n\ntwo");
    }

    #[test]
    fn the_subset_is_formatted() {
        assert_eq!(
            html("**bold** *it* ~~gone~~ `x<y`"),
            "<strong>bold</strong> <em>it</em> <del>gone</del> <code>x&lt;y</code>"
        );
        assert_eq!(
            html("```\nfn main() {}\n```"),
            r#"<pre class="code-block"><code>fn main() {}</code></pre>"#
        );
        assert_eq!(
            html("> quoted\n\nafter"),
            "<blockquote>quoted</blockquote>after"
        );
        assert_eq!(
            html("[docs](https://example.com)"),
            r#"<a href="https://example.com" rel="noopener noreferrer nofollow" target="_blank">docs</a>"#
        );
    }

    #[test]
    fn the_rest_shows_as_typed() {
        assert_eq!(html("# Title"), "# Title");
        assert_eq!(html("- one\n- two"), "- one\n- two");
        let image = html("![x](https://e.com/i.png)");
        assert!(
            image.starts_with("![x](<a href=") && !image.contains("<img"),
            "{image}"
        );
        assert_eq!(html("[x](javascript:alert(1))"), "[x](javascript:alert(1))");
        assert_eq!(
            html("<b onclick=x>hi</b>"),
            "&lt;b onclick=x&gt;hi&lt;/b&gt;"
        );
        assert_eq!(
            html("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(html("a\n\n---\n\nb"), "a\n\n---\n\nb");
        // Code is never linked or formatted inside.
        assert_eq!(
            html("`**x** https://e.com`"),
            "<code>**x** https://e.com</code>"
        );
    }

    #[test]
    fn mentions_are_marked() {
        let marks = [
            MentionMark {
                username: "bob".into(),
                me: true,
            },
            MentionMark {
                username: "carol".into(),
                me: false,
            },
        ];
        assert_eq!(
            to_html("hi @Bob and @carol, not @dave or a@bob", &marks),
            r#"hi <span class="mention me">@Bob</span> and <span class="mention">@carol</span>, not @dave or a@bob"#
        );
        assert_eq!(to_html("`@bob`", &marks), "<code>@bob</code>");
    }

    #[test]
    fn first_lines() {
        assert_eq!(first_line("\n  hello\nworld", 100), "hello…");
        assert_eq!(first_line("short", 100), "short");
        assert_eq!(first_line("abcdef", 3), "abc…");
    }
}
