//! Instants: stored milliseconds to `DateTime<Utc>` and back, every text form claw writes a
//! time in, and the one parser for times a person types on the command line.
//!
//! Each form is a named function so that a file format or a log never changes by accident:
//! the audit log's `ts`, the seed's `jobs.json`, the vault identity's `# created:` line and the
//! JSON of `--json` each keep exactly the text they have always had (see the tests below).
//! All of them are chrono; nothing here does calendar arithmetic by hand.

use std::fmt::Display;

use chrono::{
    DateTime, Local, LocalResult, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, TimeZone, Utc,
};

/// The instant of a stored time (milliseconds since the epoch). A value chrono cannot represent
/// (beyond ±262,000 years, so only a corrupt record) reads as the epoch.
pub fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Milliseconds since the epoch, as the store keeps times.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `2026-03-01T04:00:00+00:00`, with a fraction only when there is one (`…00.250+00:00`):
/// chrono's `to_rfc3339`, the form of every time in `--json` output. Keeps the zone it is given
/// (`…T05:00:00+01:00` for a time shown in a schedule's zone).
pub fn rfc3339<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: Display,
{
    t.to_rfc3339()
}

/// `2026-03-01T04:00:00Z`: UTC to the second (truncated), as `age-keygen` writes its
/// `# created:` line and as approvals show their deadlines and decisions.
pub fn rfc3339_secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2026-03-01T04:00:00.123Z`: UTC to the millisecond, always three digits: the audit log's
/// `ts` (whose text is hashed into the chain) and the daemon's log lines.
pub fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `2026-03-01T04:00:00.123456+00:00`: Python's `datetime.now(timezone.utc).isoformat()`, the
/// form of the seed's `jobs.json` (`created_at`, `last_run`) and cron output files.
pub fn iso_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// `20260301T040000Z`: UTC to the second with no separators, for file names that sort by time
/// (identity backups, cron output files).
pub fn compact(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// `20260301T040000.123Z`: [`compact`] to the millisecond (the audit log's torn-line files).
pub fn compact_millis(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// `20260301T050000.123`: the local clock to the millisecond, no zone: the names of
/// `claw skill run`'s output files, as the seed named them.
pub fn compact_local_millis(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y%m%dT%H%M%S%.3f")
        .to_string()
}

/// `2026-03-01 05:00:00`: the local clock to the second, for tables.
pub fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `2026-03-01 05:00:00 CET` (`… UTC` for a UTC time): a time in its zone, named.
pub fn human<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: Display,
{
    t.format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// `2026-03-01 05:00:00 CET (+01:00)`: [`human`] with the offset from UTC.
pub fn human_with_offset<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: Display,
{
    t.format("%Y-%m-%d %H:%M:%S %Z (%:z)").to_string()
}

/// Reads a time as claw and the seed wrote them: RFC 3339 (with `Z` or an offset), or an ISO
/// date-time without a zone, meaning UTC (Python's naive `isoformat()`). `None` for anything else.
pub fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// What [`parse_instant`] accepts, for its errors and for `--help`.
pub const INSTANT_FORMS: &str = "an RFC 3339 time (2026-11-22T10:00:00Z), a date \
     (2026-11-22, midnight local time) or how long ago (30m, 1h, 2h30m, 7d)";

/// Reads a time a person gives on the command line (`--since`, `--until`): an RFC 3339 time
/// (`2026-11-22T10:00:00Z`, `2026-11-22T11:00:00+01:00`), a date (`2026-11-22`: midnight local
/// time) or a duration meaning that long before `now` (`30m`, `1h`, `2h30m`, `7d`). A bare
/// number is refused: it could be seconds, a year or an epoch time.
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    parse_instant_in(text, now, &Local)
}

/// [`parse_instant`] with dates read in `zone` (tests pass a fixed zone).
fn parse_instant_in<Tz: TimeZone>(
    text: &str,
    now: DateTime<Utc>,
    zone: &Tz,
) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    let refuse = |why: &str| format!("`{s}` is not a time{why}; use {INSTANT_FORMS}");
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if looks_like_date(s) {
        let day =
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| refuse(" (no such date)"))?;
        return local_midnight(day, zone).ok_or_else(|| refuse(" (no midnight in the local zone)"));
    }
    // A time of day without a zone would be read one way by some and another way by others.
    if s.get(..10).is_some_and(looks_like_date) {
        return Err(refuse(
            " (an RFC 3339 time needs a zone: `Z` or an offset like +01:00)",
        ));
    }
    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse(" (a number needs a unit)"));
    }
    let ago = super::duration::parse(s).map_err(|_| refuse(""))?;
    TimeDelta::from_std(ago)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| refuse(" (too long ago)"))
}

/// `dddd-dd-dd`, whether or not it names a real day.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// The first instant of `day` in `zone`: midnight, or the end of a gap that swallows midnight
/// (a zone that moves its clocks at 00:00).
fn local_midnight<Tz: TimeZone>(day: NaiveDate, zone: &Tz) -> Option<DateTime<Utc>> {
    let start = day.and_hms_opt(0, 0, 0)?;
    (0..=120).step_by(15).find_map(|minutes| {
        match zone.from_local_datetime(&(start + TimeDelta::minutes(minutes))) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-29T12:34:56.789012Z, a leap day with every field distinct.
    fn t() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-02-29T12:34:56.789012Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn paris_zone() -> crate::time::zone::Zone {
        crate::time::zone::Zone::named("Europe/Paris").unwrap()
    }

    fn whole() -> DateTime<Utc> {
        at(1_709_210_096_000)
    }

    #[test]
    fn stored_milliseconds_round_trip() {
        assert_eq!(ms(at(1_709_210_096_789)), 1_709_210_096_789);
        assert_eq!(rfc3339_secs(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(at(i64::MAX), DateTime::UNIX_EPOCH);
        assert_eq!(rfc3339_secs(at(-1000)), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn every_form_is_exact() {
        assert_eq!(rfc3339(&t()), "2024-02-29T12:34:56.789012+00:00");
        assert_eq!(rfc3339(&whole()), "2024-02-29T12:34:56+00:00");
        assert_eq!(
            rfc3339(&at(1_709_210_096_250)),
            "2024-02-29T12:34:56.250+00:00"
        );
        assert_eq!(rfc3339_secs(t()), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339_millis(t()), "2024-02-29T12:34:56.789Z");
        assert_eq!(rfc3339_millis(whole()), "2024-02-29T12:34:56.000Z");
        assert_eq!(iso_utc(t()), "2024-02-29T12:34:56.789012+00:00");
        assert_eq!(iso_utc(whole()), "2024-02-29T12:34:56.000000+00:00");
        assert_eq!(compact(t()), "20240229T123456Z");
        assert_eq!(compact(at(0)), "19700101T000000Z");
        assert_eq!(rfc3339_secs(at(951_782_400_000)), "2000-02-29T00:00:00Z");
        assert_eq!(compact(at(1_735_689_599_000)), "20241231T235959Z");
        assert_eq!(compact_millis(t()), "20240229T123456.789Z");
        assert_eq!(human(&t()), "2024-02-29 12:34:56 UTC");
        let paris = t().with_timezone(&paris_zone());
        assert_eq!(rfc3339(&paris), "2024-02-29T13:34:56.789012+01:00");
        assert_eq!(human(&paris), "2024-02-29 13:34:56 CET");
        assert_eq!(
            human_with_offset(&paris),
            "2024-02-29 13:34:56 CET (+01:00)"
        );
    }

    #[test]
    fn the_forms_agree_with_the_strftime_patterns_they_replace() {
        for t in [
            t(),
            whole(),
            at(0),
            at(951_782_400_000),
            at(4_102_444_799_999),
        ] {
            assert_eq!(
                rfc3339_millis(t),
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            );
            assert_eq!(
                iso_utc(t),
                t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
            );
            assert_eq!(rfc3339_secs(t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            assert_eq!(
                local(t),
                t.with_timezone(&Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            );
            assert_eq!(
                compact_local_millis(t),
                t.with_timezone(&Local)
                    .format("%Y%m%dT%H%M%S%.3f")
                    .to_string()
            );
        }
    }

    #[test]
    fn reads_what_claw_and_the_seed_wrote() {
        assert_eq!(parse_iso("2024-02-29T12:34:56.789012+00:00"), Some(t()));
        assert_eq!(parse_iso(&iso_utc(t())), Some(t()));
        assert_eq!(parse_iso("2024-02-29T12:34:56Z"), Some(whole()));
        assert_eq!(parse_iso("2024-02-29T13:34:56+01:00"), Some(whole()));
        assert_eq!(parse_iso(" 2024-02-29T12:34:56 "), Some(whole()));
        assert_eq!(parse_iso("2024-02-29T12:34:56.789012"), Some(t()));
        assert_eq!(parse_iso("yesterday"), None);
        assert_eq!(parse_iso("2024-02-30T00:00:00"), None);
    }

    #[test]
    fn instants_from_the_command_line() {
        let now = whole();
        let paris = &paris_zone();
        let p = |s: &str| parse_instant_in(s, now, paris);
        assert_eq!(p("2024-02-29T12:34:56Z"), Ok(whole()));
        assert_eq!(p("2024-02-29T14:34:56+02:00"), Ok(whole()));
        assert_eq!(p("2024-02-29"), Ok(at(1_709_161_200_000))); // 23:00Z the day before
        assert_eq!(p("1h"), Ok(at(1_709_210_096_000 - 3_600_000)));
        assert_eq!(p("30m"), Ok(at(1_709_210_096_000 - 1_800_000)));
        assert_eq!(p("2h30m"), Ok(at(1_709_210_096_000 - 9_000_000)));
        assert_eq!(p("7d"), Ok(at(1_709_210_096_000 - 7 * 86_400_000)));
        for bad in [
            "garbage",
            "3000",
            "",
            "2026-13-45",
            "2024-02-30",
            "2024-02-29T12:00:00",
            "1h ago",
            "-1h",
        ] {
            let err = p(bad).unwrap_err();
            assert!(err.contains(INSTANT_FORMS), "{bad}: {err}");
        }
        assert!(p("2026-13-45").unwrap_err().contains("no such date"));
        assert!(p("3000").unwrap_err().contains("needs a unit"));
        assert!(
            p("2024-02-29T12:00:00")
                .unwrap_err()
                .contains("needs a zone")
        );
        assert!(p("99999999d").unwrap_err().contains("too long ago"));
    }

    #[test]
    fn a_date_whose_midnight_is_skipped_starts_when_the_day_does() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2022-09-11.
        let day = NaiveDate::from_ymd_opt(2022, 9, 11).unwrap();
        let start = local_midnight(
            day,
            &crate::time::zone::Zone::named("America/Santiago").unwrap(),
        )
        .unwrap();
        assert_eq!(rfc3339_secs(start), "2022-09-11T04:00:00Z");
    }
}
