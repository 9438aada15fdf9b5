//! Who someone is on a page: their display name (else their username, which stays the
//! handle) and an avatar of initials in a colour taken from the username, so that the
//! same person has the same colour everywhere and a display name cannot borrow another's.

use std::collections::HashMap;

use crate::{
    error::AppResult,
    state::AppState,
    store::users::{self, UserId},
};

/// How many avatar colours the stylesheet has (`.avatar.c0` … `.avatar.c11`).
const COLOURS: u32 = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The name to show: the display name, or the username.
    pub name: String,
    pub username: String,
    /// Whether a display name is shown (then the username is shown beside it, smaller).
    pub has_display_name: bool,
    /// One or two letters.
    pub initials: String,
    /// The colour class, `c0` to `c11`.
    pub colour: String,
}

impl Person {
    pub fn new(username: &str, display_name: Option<&str>) -> Self {
        let display_name = display_name.map(str::trim).filter(|d| !d.is_empty());
        let name = display_name.unwrap_or(username);
        Self {
            name: name.to_string(),
            username: username.to_string(),
            has_display_name: display_name.is_some(),
            initials: initials(name),
            colour: format!("c{}", colour_index(username)),
        }
    }

    /// Someone who deleted their account.
    pub fn deleted() -> Self {
        Self {
            name: "deleted user".into(),
            username: String::new(),
            has_display_name: false,
            initials: "?".into(),
            colour: "gone".into(),
        }
    }
}

/// The first letters of the first two words (of letters or digits), upper-cased.
fn initials(name: &str) -> String {
    let words = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    let initials: String = words
        .take(2)
        .filter_map(|w| w.chars().next())
        .flat_map(char::to_uppercase)
        .collect();
    if initials.is_empty() {
        "?".into()
    } else {
        initials
    }
}

/// FNV-1a of the lower-cased username: the same colour in every process and release.
fn colour_index(username: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in username.to_lowercase().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % COLOURS
}

/// The display names of these users (those who have one), in one query.
pub async fn display_names(
    state: &AppState,
    ids: impl IntoIterator<Item = UserId>,
) -> AppResult<HashMap<UserId, String>> {
    let mut ids: Vec<UserId> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(users::display_names(&state.db, &ids).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_and_colours() {
        assert_eq!(Person::new("ada.l", Some("Ada Lovelace")).initials, "AL");
        assert_eq!(Person::new("ada.l", None).initials, "AL");
        assert_eq!(Person::new("ada", None).initials, "A");
        assert_eq!(Person::new("émile_z", Some("  ")).name, "émile_z");
        assert_eq!(Person::new("x", Some("émile zola jr")).initials, "ÉZ");
        assert_eq!(Person::new("x", Some("--")).initials, "?");
        let a = Person::new("Bob", None);
        assert_eq!(
            a.colour,
            Person::new("bob", Some("Robert")).colour,
            "by username"
        );
        assert!(a.colour.starts_with('c'));
        let colours: std::collections::HashSet<String> =
            ["ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal"]
                .iter()
                .map(|u| Person::new(u, None).colour)
                .collect();
        assert!(
            colours.len() > 3,
            "names spread over the colours: {colours:?}"
        );
    }
}
