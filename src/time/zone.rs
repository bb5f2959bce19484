//! IANA time zones for schedules: the zone a `tz:` names (or the machine's), as a chrono
//! [`TimeZone`] whose offsets name themselves (`CET`, `EDT`).
//!
//! The rules come from the IANA database built into claw (through `jiff`'s copy of it), so a
//! schedule fires at the same instants on every machine, whether or not it has `tzdata`. The
//! table is compact binary data that the loader does not relocate: the zone rules cost a process
//! nothing until a schedule asks for one.

use std::fmt;
use std::sync::OnceLock;

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use jiff::tz::{AmbiguousOffset, TimeZoneDatabase};

/// The built-in database (looked up by name, ignoring ASCII case).
fn database() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// An IANA zone: `Europe/Berlin`, `America/New_York`, `UTC`. Cloning it (every offset it
/// gives carries it) shares the rules.
#[derive(Clone)]
pub struct Zone {
    /// Always one of the database's zones (it has an IANA name).
    rules: jiff::tz::TimeZone,
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            rules: jiff::tz::TimeZone::UTC,
        }
    }

    /// The zone named `name` (an IANA name, any ASCII case), or `None` (also for jiff's
    /// `Etc/Unknown`, which names no zone).
    pub fn named(name: &str) -> Option<Zone> {
        let rules = database().get(name).ok()?;
        rules.iana_name().is_some().then_some(Zone { rules })
    }

    /// Every name the database knows, for suggestions.
    pub fn names() -> Vec<String> {
        database()
            .available()
            .map(|n| n.as_str().to_owned())
            .collect()
    }

    /// The zone's IANA name, as the database spells it.
    pub fn name(&self) -> &str {
        self.rules.iana_name().unwrap_or("UTC")
    }

    /// Whether this is `UTC` itself (by that name).
    pub fn is_utc(&self) -> bool {
        self.name() == "UTC"
    }

    fn offset_at(&self, utc: &NaiveDateTime) -> ZoneOffset {
        let ts = timestamp(utc);
        ZoneOffset {
            zone: self.clone(),
            fixed: fixed(self.rules.to_offset(ts)),
            at: ts,
        }
    }

    /// The offset in force at `local - offset`, named as at that instant.
    fn local_offset(&self, local: &NaiveDateTime, offset: jiff::tz::Offset) -> ZoneOffset {
        let fixed = fixed(offset);
        let utc = *local - chrono::TimeDelta::seconds(i64::from(fixed.local_minus_utc()));
        ZoneOffset {
            zone: self.clone(),
            fixed,
            at: timestamp(&utc),
        }
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name())
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An offset of a [`Zone`] at one instant; it displays as the zone's abbreviation there
/// (`CET`, `CEST`, or `+0530` where the database has no letters), as `%Z` shows it.
#[derive(Clone)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
    at: jiff::Timestamp,
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.zone.rules.to_offset_info(self.at).abbreviation())
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<ZoneOffset> {
        let Some(civil) = civil(local) else {
            // Outside the years the rules cover (-9999..=9999): the offset of the nearest end.
            return LocalResult::Single(self.offset_at(local));
        };
        match self.rules.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                LocalResult::Single(self.local_offset(local, offset))
            }
            // A fold: the earlier instant has the offset from before the transition.
            AmbiguousOffset::Fold { before, after } => LocalResult::Ambiguous(
                self.local_offset(local, before),
                self.local_offset(local, after),
            ),
            AmbiguousOffset::Gap { .. } => LocalResult::None,
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_at(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.offset_at(utc)
    }
}

fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    FixedOffset::east_opt(offset.seconds()).unwrap_or_else(|| chrono::Utc.fix())
}

/// A UTC date-time as an instant, clamped to the range the rules cover.
fn timestamp(utc: &NaiveDateTime) -> jiff::Timestamp {
    let secs = utc.and_utc().timestamp().clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::{Datelike as _, Timelike as _};
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        i8::try_from(local.month()).ok()?,
        i8::try_from(local.day()).ok()?,
        i8::try_from(local.hour()).ok()?,
        i8::try_from(local.minute()).ok()?,
        i8::try_from(local.second()).ok()?,
        0,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap_or_else(|| panic!("no zone {name}"))
    }

    #[test]
    fn names_are_found_in_any_case_and_spelled_as_the_database_does() {
        assert_eq!(zone("europe/paris").name(), "Europe/Paris");
        assert_eq!(zone("UTC").name(), "UTC");
        assert!(zone("UTC").is_utc());
        assert!(!zone("Etc/UTC").is_utc());
        assert!(Zone::named("Mars/Olympus_Mons").is_none());
        assert!(Zone::named("../../etc/passwd").is_none());
        assert!(Zone::named("Etc/Unknown").is_none());
        assert!(Zone::names().iter().any(|n| n == "America/Santiago"));
    }

    #[test]
    fn offsets_and_abbreviations_follow_the_rules() {
        let paris = zone("Europe/Paris");
        let winter = t("2026-01-15T12:00:00Z").with_timezone(&paris);
        assert_eq!(winter.to_rfc3339(), "2026-01-15T13:00:00+01:00");
        assert_eq!(winter.format("%Z").to_string(), "CET");
        let summer = t("2026-07-15T12:00:00Z").with_timezone(&paris);
        assert_eq!(summer.to_rfc3339(), "2026-07-15T14:00:00+02:00");
        assert_eq!(summer.format("%Z").to_string(), "CEST");
        let kolkata = t("2026-07-15T12:00:00Z").with_timezone(&zone("Asia/Kolkata"));
        assert_eq!(kolkata.format("%H:%M %Z").to_string(), "17:30 IST");
    }

    #[test]
    fn local_times_in_gaps_and_folds() {
        let ny = zone("America/New_York");
        let day = |h, m| {
            NaiveDate::from_ymd_opt(2026, 3, 8)
                .and_then(|d| d.and_hms_opt(h, m, 0))
                .unwrap_or_default()
        };
        // 02:30 does not exist on the spring-forward day.
        assert!(matches!(
            ny.from_local_datetime(&day(2, 30)),
            LocalResult::None
        ));
        let one = ny
            .from_local_datetime(&day(1, 30))
            .single()
            .map(|t| t.to_rfc3339());
        assert_eq!(one.as_deref(), Some("2026-03-08T01:30:00-05:00"));
        // 01:30 happens twice on the fall-back day: EDT first, then EST.
        let fold = NaiveDate::from_ymd_opt(2026, 11, 1)
            .and_then(|d| d.and_hms_opt(1, 30, 0))
            .unwrap_or_default();
        match ny.from_local_datetime(&fold) {
            LocalResult::Ambiguous(a, b) => {
                assert_eq!(a.to_rfc3339(), "2026-11-01T01:30:00-04:00");
                assert_eq!(b.to_rfc3339(), "2026-11-01T01:30:00-05:00");
                assert_eq!(a.format("%Z").to_string(), "EDT");
                assert_eq!(b.format("%Z").to_string(), "EST");
            }
            other => panic!("not a fold: {other:?}"),
        }
    }

    #[test]
    fn far_dates_keep_an_offset() {
        let paris = zone("Europe/Paris");
        let far = NaiveDate::from_ymd_opt(20000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        assert!(paris.from_local_datetime(&far).single().is_some());
        let _ = paris.offset_from_utc_datetime(&far).fix();
    }
}
