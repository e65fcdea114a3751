//! The only place the exporter crate reads a clock; everything else takes `now` as an argument.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The monotonic clock, for pacing and ages.
#[expect(
    clippy::disallowed_methods,
    reason = "the single clock edge of the crate"
)]
pub fn now() -> Instant {
    Instant::now()
}

/// Nanoseconds since the UNIX epoch: live packet timestamps and the Export Time of Messages.
#[expect(
    clippy::disallowed_methods,
    reason = "the single clock edge of the crate"
)]
pub fn unix_nanos() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}
