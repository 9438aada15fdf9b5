//! Richer messages, the parts without SQL: the Markdown subset's renderer, `@mentions`,
//! reaction emoji and the search tokenizer. The store side is `store::rich` (replies,
//! mentions, reactions) and `store::search`.

pub mod emoji;
pub mod format;
pub mod mentions;
pub mod tokens;
