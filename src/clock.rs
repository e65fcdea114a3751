//! The only place the collector reads a clock; everything else takes `now` as an argument.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The monotonic clock, for timers and ages.
#[expect(
    clippy::disallowed_methods,
    reason = "the single clock edge of the crate"
)]
pub fn now() -> Instant {
    Instant::now()
}

/// Seconds since the UNIX epoch, for file names and partitions.
#[expect(
    clippy::disallowed_methods,
    reason = "the single clock edge of the crate"
)]
pub fn unix_seconds() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}
