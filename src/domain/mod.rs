//! Input types that are parsed once at the edge. Inside the application a `Username`
//! is valid; the only way to make one is `parse`. Error texts are the original's.

pub mod cursor;

use std::fmt;

use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

macro_rules! string_newtype {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(Username);
string_newtype!(Email);
string_newtype!(MessageContent);
string_newtype!(GroupName);

/// A password that meets the rules; never logged.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// At least 8 characters, with an uppercase letter, a lowercase letter and a digit.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let ok = s.chars().count() >= 8
            && s.chars().any(|c| c.is_uppercase())
            && s.chars().any(|c| c.is_lowercase())
            && s.chars().any(|c| c.is_ascii_digit())
            && s.len() <= 1024;
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("invalid password")
        }
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Username {
    /// 3 to 25 letters, digits, `_` and `.`; not starting or ending with `_`/`.`;
    /// no two of `_`/`.` in a row.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let len = s.chars().count();
        let allowed = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let is_sep = |c: char| c == '_' || c == '.';
        let bad_edges = s.starts_with(is_sep) || s.ends_with(is_sep);
        let doubled = s
            .as_bytes()
            .windows(2)
            .any(|w| is_sep(w[0] as char) && is_sep(w[1] as char));
        if (3..=25).contains(&len) && allowed && !bad_edges && !doubled {
            Ok(Self(s.to_string()))
        } else {
            Err("invalid username")
        }
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$").expect("valid regex")
});

impl Email {
    /// `local@domain.tld`, as the original's regular expression; at most 255 characters.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        if s.len() <= 255 && EMAIL.is_match(s) {
            Ok(Self(s.to_string()))
        } else {
            Err("invalid email")
        }
    }
}

pub const MAX_MESSAGE_CHARS: usize = 2000;

impl MessageContent {
    /// 1 to 2,000 characters after trimming; stored as typed.
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err("message content cannot be empty".into());
        }
        if trimmed.chars().count() > MAX_MESSAGE_CHARS {
            return Err(format!(
                "message content is longer than {MAX_MESSAGE_CHARS} characters"
            ));
        }
        Ok(Self(trimmed.to_string()))
    }
}

impl MessageContent {
    /// The text of a message that carries files: as [`MessageContent::parse`], except
    /// that it may be empty.
    pub fn caption(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(Self(String::new()));
        }
        Self::parse(s)
    }
}

pub const MAX_GROUP_NAME_CHARS: usize = 20;

impl GroupName {
    /// 1 to 20 characters after trimming (the schema's column width).
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        let len = trimmed.chars().count();
        if len == 0 || len > MAX_GROUP_NAME_CHARS {
            return Err(format!(
                "group chat name must be 1 to {MAX_GROUP_NAME_CHARS} characters"
            ));
        }
        Ok(Self(trimmed.to_string()))
    }
}

/// The latest status of a friendship (`friendship_status_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FriendshipStatus {
    Requested,
    Accepted,
    Declined,
    Blocked,
}

impl FriendshipStatus {
    pub fn code(self) -> &'static str {
        match self {
            Self::Requested => "R",
            Self::Accepted => "A",
            Self::Declined => "D",
            Self::Blocked => "B",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "R" => Some(Self::Requested),
            "A" => Some(Self::Accepted),
            "D" => Some(Self::Declined),
            "B" => Some(Self::Blocked),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_originals_usernames() {
        for ok in [
            "valid_username.23",
            "vAli",
            "hello.world",
            "223221",
            "USERNAME",
            "hie",
        ] {
            assert!(Username::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "_invalid",
            "invalid_",
            "invalid__user",
            "hi_.there",
            "some._user",
            "boop..bop",
            "has*invalid)()@#characters",
            "this_username_is_far_too_long_to_be_valid",
            "hi",
        ] {
            assert_eq!(Username::parse(bad), Err("invalid username"), "{bad}");
        }
    }

    #[test]
    fn the_originals_emails() {
        for ok in ["email@email.com", "my.ownsite@ourearth.org"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "@email.com",
            "cool.cool",
            "not an email",
            "google.email@com",
        ] {
            assert_eq!(Email::parse(bad), Err("invalid email"), "{bad}");
        }
    }

    #[test]
    fn the_originals_passwords() {
        for ok in ["Password231", "eloWor1d", "2_password_D-*9)"] {
            assert!(Password::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "aBC4567",
            "not_upper_case2",
            "ONLY UPPER12 CASE",
            "noNumbers",
            "22123233",
        ] {
            assert!(Password::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_content_is_trimmed_and_bounded() {
        assert!(MessageContent::parse("   ").is_err());
        assert_eq!(MessageContent::parse(" hi ").unwrap().as_str(), "hi");
        assert!(MessageContent::parse(&"é".repeat(2000)).is_ok());
        assert!(MessageContent::parse(&"é".repeat(2001)).is_err());
        assert_eq!(MessageContent::caption("  ").unwrap().as_str(), "");
        assert_eq!(MessageContent::caption(" look ").unwrap().as_str(), "look");
        assert!(MessageContent::caption(&"é".repeat(2001)).is_err());
    }
}
