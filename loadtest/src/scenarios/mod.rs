//! The four modes; each returns whether the run passed (exit status 0 or 1).

pub mod history;
pub mod idle;
pub mod messages;
pub mod soak;
