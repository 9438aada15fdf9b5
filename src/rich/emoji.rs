//! Reaction emoji: exactly one emoji grapheme, kept in one canonical spelling.

use unicode_segmentation::UnicodeSegmentation;

/// An emoji fit for a reaction; `parse` is the only way to make one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReactionEmoji(&'static str);

/// The picker's common set.
pub const COMMON: &[&str] = &["👍", "❤️", "😂", "😮", "😢", "🎉", "🙏", "👀"];

/// At most this many different emoji on one message.
pub const MAX_DISTINCT_PER_MESSAGE: i64 = 20;

pub const INVALID: &str = "a reaction is exactly one emoji";

impl ReactionEmoji {
    /// One grapheme cluster that is an emoji (skin tones, ZWJ sequences and flags
    /// included). Spellings of the same emoji with or without the emoji presentation
    /// selector become one (`❤` and `❤️` are the same reaction).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        if s.is_empty() || s.len() > 32 || s.graphemes(true).count() != 1 {
            return Err(INVALID);
        }
        emojis::get(s).map(|e| Self(canonical(e))).ok_or(INVALID)
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// The fully-qualified spelling of an emoji (with the emoji presentation selector where
/// Unicode gives one), whichever spelling came in.
fn canonical(e: &'static emojis::Emoji) -> &'static str {
    let s = e.as_str();
    if !s.contains('\u{FE0F}') {
        let mut with_selector = String::with_capacity(s.len() + 3);
        let mut chars = s.chars();
        if let Some(first) = chars.next() {
            with_selector.push(first);
            with_selector.push('\u{FE0F}');
            with_selector.extend(chars);
            if let Some(q) = emojis::get(&with_selector) {
                if q.as_str() != s && q.name() == e.name() {
                    return q.as_str();
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_emoji_grapheme_only() {
        for ok in ["👍", "👍🏽", "❤️", "🇩🇪", "👩‍👩‍👧", "🎉"] {
            assert!(ReactionEmoji::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "a", "👍👍", "ab", "👍a", ":+1:", "1", "#", "<b>"] {
            assert_eq!(ReactionEmoji::parse(bad), Err(INVALID), "{bad}");
        }
        assert_eq!(
            ReactionEmoji::parse("❤").unwrap(),
            ReactionEmoji::parse("❤️").unwrap()
        );
        for e in COMMON {
            assert_eq!(ReactionEmoji::parse(e).unwrap().as_str(), *e);
        }
    }
}
