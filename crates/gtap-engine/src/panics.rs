//! A panic inside stage code becomes an error of its instance: no panic message reaches the
//! user as a crash, and a builder thread that panics still reports, so a run never waits on it.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    /// Where the last captured panic on this thread happened (the payload does not say).
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}
/// How many captures are under way: while any is, panics are recorded, not printed.
static CAPTURING: AtomicUsize = AtomicUsize::new(0);

/// Installs, once, a panic hook that stays quiet while a panic is being captured (it logs it
/// at debug level) and otherwise defers to the hook it replaced.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.load(Ordering::SeqCst) == 0 {
                return previous(info);
            }
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            LOCATION.with(|c| *c.borrow_mut() = at);
            tracing::debug!("captured panic: {info}");
        }));
    });
}

/// Runs `f`; a panic becomes `Err(message)`, with its location when it happened on this
/// thread (a panic in a rayon worker arrives with its message only).
pub(crate) fn capture<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    CAPTURING.fetch_add(1, Ordering::SeqCst);
    LOCATION.with(|c| c.borrow_mut().take());
    let result = catch_unwind(AssertUnwindSafe(f));
    CAPTURING.fetch_sub(1, Ordering::SeqCst);
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        // libtorch's errors carry a C++ stack trace after this line; the cause is above it.
        let message = match message.find("Exception raised from") {
            Some(cut) => message[..cut].trim_end().to_owned(),
            None => message,
        };
        let message = crate::error::bounded(&message, 1000);
        match LOCATION.with(|c| c.borrow_mut().take()) {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }
    })
}
