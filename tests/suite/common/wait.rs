//! Waiting on observable state instead of sleeping with a margin: poll a
//! condition until it holds, or fail naming what never happened. `eventually`
//! is for async tests (it sleeps on tokio's clock, so it also works under
//! paused time); `eventually_blocking` is the same loop for plain threads
//! that watch a child process.

use std::time::Duration;

/// How long to sleep between two polls.
const POLL: Duration = Duration::from_millis(20);

/// Polls `f` until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// `eventually` for a thread outside the runtime: blocks between polls.
pub fn eventually_blocking<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll_blocking(limit, f).unwrap_or_else(|| panic!("timed out after {limit:?}: {what}"))
}

/// Polls `f` until it returns `Some`, for at most `limit`; `None` when it
/// never did, for a caller that reports the failure in more detail itself.
pub fn poll_blocking<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Awaits `f` with paused time held still. Under `start_paused`, tokio moves
/// the clock to the next timer whenever every task waits, even when they
/// only wait for bytes already on their way through a loopback socket; a
/// server timer can then fire before the server has read what the client
/// sent. Yielding instead of idling polls the sockets without moving the
/// clock, so only the test's own sleeps and timeouts move it. Panics after
/// `STEP` of real time.
pub async fn frozen<F: std::future::Future>(f: F) -> F::Output {
    let started = std::time::Instant::now();
    let mut f = std::pin::pin!(f);
    loop {
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(v) = polled {
            return v;
        }
        assert!(
            started.elapsed() < super::STEP,
            "no progress within {:?} of real time",
            super::STEP
        );
        tokio::task::yield_now().await;
    }
}
