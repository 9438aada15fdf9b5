//! Bulk work that no one waits on interactively (re-encoding an image, writing an upload
//! to disk) runs on threads at nice 10, so that it does not delay the requests someone
//! does wait on: the operating system then lets the async workers run first: a `/health` probe or a
//! page does not wait for a time slice behind fifty upload writers and image decoders
//! (`scripts/bench.sh uploads`, `docs/loadtest.md`).

use std::future::Future;

/// Runs `f` on a thread of its own at a lower scheduling priority, inside the caller's
/// span. A thread per call, not a pool: a thread's priority cannot be raised again
/// without privileges, and starting one costs microseconds against the milliseconds of
/// the work. The thread starts at once; the future gives `f`'s result,
/// or an error if the thread could not start or `f` panicked.
pub fn spawn<F, R>(f: F) -> impl Future<Output = anyhow::Result<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    let (done, result) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("background".into())
        .spawn(move || {
            lower_this_threads_priority();
            let _ = done.send(span.in_scope(f));
        });
    async move {
        started?;
        result
            .await
            .map_err(|_| anyhow::anyhow!("a background task panicked"))
    }
}

/// Nice 10 for the calling thread (on Linux, `setpriority` with 0 means the calling
/// thread, not the process). Best effort: should it fail, the work runs at normal
/// priority.
fn lower_this_threads_priority() {
    #[cfg(unix)]
    // SAFETY: setpriority has no memory-safety preconditions.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS as _, 0, 10);
    }
}
