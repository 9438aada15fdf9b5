//! One place that sets up tracing, and CPU work that keeps the request's span.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{Config, LogFormat};

/// Installs the global subscriber: human-readable for a terminal, JSON for CloudWatch,
/// filtered by `RUST_LOG` (`config.log_filter`). Colours only when stdout, where the logs
/// go, is a terminal and `NO_COLOR` is unset: a file or a pipe gets plain text.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter)
        .expect("RUST_LOG was checked when the configuration was read");
    let colour = !config.no_color && std::io::stdout().is_terminal();
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_ansi(colour))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    // A second call (tests spawn many apps in one process) keeps the first subscriber.
    let _ = result;
}

/// `spawn_blocking` that runs `f` inside the caller's span, so its logs stay attached
/// to the request that asked for the work.
pub fn spawn_blocking_with_tracing<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// Adds the signed-in user to the current request's span, so that every log line of the
/// request can be tied to the person who reports a problem.
pub fn record_user(user_id: i32) {
    tracing::Span::current().record("user_id", user_id);
}

/// Adds the conversation a request acts on to its span: `direct:<user id>` or
/// `group:<group id>`.
pub fn record_conversation(conversation: crate::store::messages::Conversation) {
    use crate::store::messages::Conversation;
    let label = match conversation {
        Conversation::Direct(other) => format!("direct:{other}"),
        Conversation::Group(group) => format!("group:{group}"),
    };
    tracing::Span::current().record("conversation", label);
}
