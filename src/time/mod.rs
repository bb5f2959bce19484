//! Time as claw writes and reads it: durations (`30s`, `2h30m`, the seed's bare seconds) and
//! timestamps (milliseconds since the epoch in the store, RFC 3339 everywhere a person reads
//! them). Nothing here keeps time except [`now_ms`], the one reading of the wall clock that
//! records use. Every text form of a timestamp, and the parser for times typed on the command
//! line, is in [`instant`]: code elsewhere formats no time itself.

pub mod duration;
pub mod instant;
pub mod zone;

use std::time::{SystemTime, UNIX_EPOCH};

pub use instant::{
    INSTANT_FORMS, at, compact, compact_local_millis, compact_millis, human, human_with_offset,
    iso_utc, local, ms, parse_instant, parse_iso, rfc3339, rfc3339_millis, rfc3339_secs,
};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
