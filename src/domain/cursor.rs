//! The original API's cursors: `next___<key>` or `prev___<key>`, the sort key of the last
//! (next) or first (prev) item of the current page.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Next(String),
    Prev(String),
}

pub const INVALID_CURSOR: &str = "invalid cursor";

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let (direction, key) = raw.split_once("___").ok_or(INVALID_CURSOR)?;
        if key.is_empty() || key.len() > 255 {
            return Err(INVALID_CURSOR);
        }
        match direction {
            "next" => Ok(Cursor::Next(key.to_string())),
            "prev" => Ok(Cursor::Prev(key.to_string())),
            _ => Err(INVALID_CURSOR),
        }
    }

    /// The key as a number (message ids); other keys are invalid cursors.
    pub fn numeric(&self) -> Result<(bool, i64), &'static str> {
        let (forward, key) = match self {
            Cursor::Next(k) => (true, k),
            Cursor::Prev(k) => (false, k),
        };
        key.parse()
            .map(|k| (forward, k))
            .map_err(|_| INVALID_CURSOR)
    }
}

/// The cursors of the pages before and after this one: `prev___<key>`, `next___<key>`;
/// null at either end.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CursorLinks {
    #[schema(example = "prev___42")]
    pub prev_page: Option<String>,
    #[schema(example = "next___17")]
    pub next_page: Option<String>,
}

/// One page of a list, and the cursors to the pages around it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub cursor: CursorLinks,
    pub results: Vec<T>,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with one extra row (`limit + 1`) in the direction
    /// of travel, which tells whether more pages lie that way. `rows` are in display order.
    pub fn from_rows(
        mut rows: Vec<T>,
        limit: usize,
        cursor: Option<&Cursor>,
        key: impl Fn(&T) -> String,
    ) -> Self {
        let backward = matches!(cursor, Some(Cursor::Prev(_)));
        let more = rows.len() > limit;
        if more {
            if backward {
                rows.remove(0);
            } else {
                rows.truncate(limit);
            }
        }
        let (has_prev, has_next) = match cursor {
            None => (false, more),
            Some(Cursor::Next(_)) => (true, more),
            Some(Cursor::Prev(_)) => (more, true),
        };
        let prev_page = has_prev
            .then(|| rows.first().map(|r| format!("prev___{}", key(r))))
            .flatten();
        let next_page = has_next
            .then(|| rows.last().map(|r| format!("next___{}", key(r))))
            .flatten();
        Page {
            cursor: CursorLinks {
                prev_page,
                next_page,
            },
            results: rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_originals_format_and_refuses_the_rest() {
        assert_eq!(Cursor::parse("next___bob"), Ok(Cursor::Next("bob".into())));
        assert_eq!(Cursor::parse("prev___12"), Ok(Cursor::Prev("12".into())));
        for bad in ["", "next", "next___", "up___bob", "next__bob"] {
            assert_eq!(Cursor::parse(bad), Err(INVALID_CURSOR), "{bad}");
        }
        assert!(Cursor::parse("next___abc").unwrap().numeric().is_err());
    }
}
