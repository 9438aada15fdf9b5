//! `@username` mentions in a message's text.

use std::ops::Range;

/// One `@name` in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<'t> {
    /// The name as typed, without the `@`.
    pub username: &'t str,
    /// Where `@name` is in the text.
    pub range: Range<usize>,
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Every `@name` that could be a username: an `@` not inside a word (so `me@example.com`
/// is no mention), then 3 to 25 letters, digits, `_` or `.`; a trailing `.` or `_` ends the
/// sentence, not the name.
pub fn find(text: &str) -> Vec<Found<'_>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let before = prev;
        prev = Some(c);
        if c != '@' || before.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '@') {
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && name_char(bytes[end] as char) {
            end += 1;
        }
        while end > start && matches!(bytes[end - 1], b'.' | b'_') {
            end -= 1;
        }
        let name = &text[start..end];
        if (3..=25).contains(&name.len()) && crate::domain::Username::parse(name).is_ok() {
            out.push(Found {
                username: name,
                range: i..end,
            });
        }
    }
    out
}

/// The distinct names mentioned in `text`, lowercased, in order of appearance.
pub fn names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for found in find(text) {
        let name = found.username.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mentions_not_addresses() {
        let found: Vec<&str> =
            find("@alice hi @bob.smith, mail me@example.com (@carol_) @x @@dave")
                .into_iter()
                .map(|f| f.username)
                .collect();
        assert_eq!(found, ["alice", "bob.smith", "carol"]);
        assert_eq!(names("@Bob and @bob"), ["bob"]);
        let f = &find("hey @Bob!")[0];
        assert_eq!(f.range, 4..8);
    }
}
