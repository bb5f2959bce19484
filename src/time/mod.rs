//! Time as claw writes and reads it: durations (`30s`, `2h30m`, the seed's bare seconds) and
//! timestamps (milliseconds since the epoch in the store, RFC 3339 everywhere a person reads
//! them). Nothing here keeps time except [`now_ms`], the one reading of the wall clock that
//! records use.

pub mod duration;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A time in ms since the epoch as RFC 3339 in UTC, to the second (`2026-12-03T09:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}
