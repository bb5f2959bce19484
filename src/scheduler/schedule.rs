//! Schedule expressions and their next fire.
//!
//! Forms (trimmed, case-insensitive):
//! - 5-field cron (`minute hour day-of-month month day-of-week`), or 6 fields with a leading
//!   seconds field; names (`MON-FRI`, `JAN`), `L`, `LW`, `5L`, `MON#2`;
//! - macros `@yearly @annually @monthly @weekly @daily @midnight @hourly` (`@reboot` is refused);
//! - `every <duration>` (`30s`, `5m`, `2h30m`, `1d`, the seed's `every 5 m`): elapsed time from an
//!   anchor, not wall-clock time;
//! - `daily at HH:MM` and the seed's bare `HH:MM`: a cron job at that minute.
//!
//! The semantics are Debian cron's as modelled by the Python package `cronsim` (the test oracle):
//! a day field starting with `*` makes day-of-month and day-of-week ANDed (otherwise ORed), and in
//! a zone with DST a 5-field job whose minute and hour fields do not start with `*` is matched on
//! the wall clock: in the spring-forward gap it runs right after the jump, in the fall-back fold
//! it runs once (the first time). Other jobs follow real time (an hourly job runs twice in a fold).
//!
//! `croner` is not used: claw needs cronsim's grammar (its step rule over lists, `7` as Sunday in
//! steps, `LW`), its day-field rule and its DST rules exactly, and errors that name the field and
//! its range; the matching below is a port of cronsim's iteration, field by field, so the oracle
//! test can hold it to the same answers.

use std::fmt;
use std::time::Duration;

use crate::time::zone::Zone;
use chrono::{
    DateTime, Datelike, Days, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime,
    Offset, TimeDelta, TimeZone, Timelike, Utc,
};

/// A parsed schedule with its zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The expression as written (trimmed).
    text: String,
    kind: Kind,
    tz: Zone,
    /// For `every`: fires are at `anchor + k * interval`, k ≥ 1. Default: the Unix epoch.
    anchor: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Cron(Box<CronExpr>),
    /// Whole seconds, at least 1.
    Every(i64),
}

impl Schedule {
    /// Parses an expression; `tz` is an IANA zone name (`None`: the machine's local zone).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let tz = match tz {
            Some(name) => parse_tz(name)?,
            None => local_zone(),
        };
        let text = expr.trim();
        if text.is_empty() {
            return Err("empty schedule (expected e.g. `0 9 * * MON-FRI`, `every 5m`, `daily at 09:30` or `@hourly`)".into());
        }
        let lower = text.to_ascii_lowercase();
        let kind = if let Some(rest) = lower.strip_prefix("every") {
            Kind::Every(parse_every(rest.trim(), text)?)
        } else if let Some(rest) = lower.strip_prefix("daily at") {
            Kind::Cron(Box::new(daily_at(rest.trim(), text)?))
        } else if is_clock(&lower) {
            Kind::Cron(Box::new(daily_at(&lower, text)?))
        } else if lower.starts_with('@') {
            let cron = match lower.as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                "@reboot" => {
                    return Err("`@reboot` is not supported: claw schedules times, not boots (start the command from a systemd unit instead)".into());
                }
                other => {
                    return Err(format!(
                        "unknown macro `{other}` (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
                    ));
                }
            };
            Kind::Cron(Box::new(CronExpr::parse(cron)?))
        } else {
            Kind::Cron(Box::new(CronExpr::parse(text)?))
        };
        Ok(Schedule {
            text: text.to_owned(),
            kind,
            tz,
            anchor: None,
        })
    }

    /// Sets the anchor of an `every` schedule (the time of its creation: the first fire is one
    /// interval later). No effect on other forms.
    #[must_use]
    pub fn with_anchor(mut self, anchor: DateTime<Utc>) -> Schedule {
        self.anchor = Some(anchor);
        self
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.text
    }

    pub fn tz(&self) -> &Zone {
        &self.tz
    }

    /// The interval of an `every` schedule.
    pub fn interval(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every(secs) => Some(Duration::from_secs(secs.unsigned_abs())),
            Kind::Cron(_) => None,
        }
    }

    /// The first fire strictly after `after`, or `None` if there is none within 50 years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(secs) => {
                let anchor = self.anchor.unwrap_or(DateTime::UNIX_EPOCH);
                let step_ms = secs.checked_mul(1000)?;
                let since = after.timestamp_millis() - anchor.timestamp_millis();
                // The smallest k ≥ 1 with anchor + k·step > after.
                let k = if since < 0 {
                    1
                } else {
                    since.div_euclid(step_ms) + 1
                };
                anchor.checked_add_signed(TimeDelta::try_milliseconds(k.checked_mul(step_ms)?)?)
            }
            Kind::Cron(cron) => {
                let mut from = after;
                // A start inside the second pass of a fall-back fold can yield a wall-clock fire
                // of the first pass (cronsim does); step past it so the result is after `after`.
                for _ in 0..4 {
                    let fire = cron.next_from(from, &self.tz)?;
                    if fire > after {
                        return Some(fire);
                    }
                    from = fire;
                }
                None
            }
        }
    }

    /// The next `n` fires after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(f) => {
                    out.push(f);
                    t = f;
                }
                None => break,
            }
        }
        out
    }

    /// A sentence saying when it fires.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Every(secs) => {
                let every = crate::time::duration::format(Duration::from_secs(secs.unsigned_abs()));
                match self.anchor {
                    Some(a) => format!(
                        "every {every} (elapsed time, counted from {})",
                        crate::time::rfc3339_secs(a)
                    ),
                    None => format!("every {every} (elapsed time)"),
                }
            }
            Kind::Cron(c) => format!("{} in {}", c.describe(), self.tz.name()),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses an IANA zone name.
pub fn parse_tz(name: &str) -> Result<Zone, String> {
    let name = name.trim();
    Zone::named(name).ok_or_else(|| {
        let names = Zone::names();
        let hint = crate::diagnostic::did_you_mean(name, names.iter().map(String::as_str))
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        format!(
            "unknown time zone `{name}` (expected an IANA name such as Europe/Berlin or UTC){hint}"
        )
    })
}

/// The machine's zone: `TZ` (a name, `:name` or a path under `zoneinfo/`), else `/etc/localtime`,
/// else UTC.
pub fn local_zone() -> Zone {
    if let Some(tz) = crate::config::env::var("TZ") {
        let tz = tz.trim_start_matches(':');
        let name = tz.rsplit_once("zoneinfo/").map_or(tz, |(_, n)| n);
        if let Some(z) = Zone::named(name) {
            return z;
        }
    }
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|n| Zone::named(&n))
        .unwrap_or_else(Zone::utc)
}

/// `H:MM` or `HH:MM` (the seed's bare time of day; also what it reads after `daily at`).
pub(super) fn is_clock(s: &str) -> bool {
    let Some((h, m)) = s.split_once(':') else {
        return false;
    };
    !h.is_empty()
        && !m.is_empty()
        && h.len() <= 2
        && m.len() == 2
        && (h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
}

fn daily_at(clock: &str, text: &str) -> Result<CronExpr, String> {
    let bad = || format!("`{text}`: expected a time of day as H:MM or HH:MM (00:00 to 23:59)");
    if !is_clock(clock) {
        return Err(bad());
    }
    let (h, m) = clock.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    CronExpr::parse(&format!("{m} {h} * * *"))
}

fn parse_every(rest: &str, text: &str) -> Result<i64, String> {
    let compact: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(format!(
            "`{text}`: expected an interval after `every`, e.g. every 30s, 5m, 2h30m, 1d"
        ));
    }
    if compact.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}`: the interval needs a unit (s, m, h or d), e.g. every {compact}m"
        ));
    }
    let d = crate::time::duration::parse(&compact).map_err(|e| format!("`{text}`: {e}"))?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err(format!(
            "`{text}`: the interval must be a whole number of seconds, at least 1s"
        ));
    }
    i64::try_from(d.as_secs())
        .ok()
        .filter(|s| *s <= 100 * 366 * 86_400)
        .ok_or_else(|| format!("`{text}`: the interval is too long"))
}

// ---------------------------------------------------------------------------------------------
// Cron expressions (cronsim's grammar and matching).

const FIELD_NAMES: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];
const RANGES: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS_IN_MONTH: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Second = 0,
    Minute = 1,
    Hour = 2,
    Day = 3,
    Month = 4,
    Dow = 5,
}

/// One parsed term of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Value(u32),
    /// `L` in day-of-month.
    Last,
    /// `LW` in day-of-month.
    LastWeekday,
    /// `5L` in day-of-week: the last such weekday of the month.
    LastDow(u32),
    /// `5#2` in day-of-week: the n-th such weekday of the month.
    Nth(u32, u32),
}

/// A cron expression: one bit set per field, plus the day-field specials.
#[derive(Debug, Clone, PartialEq)]
struct CronExpr {
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    day_last: bool,
    day_last_weekday: bool,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6 (Sunday = 0; a written 7 is folded to 0).
    dows: u8,
    /// Weekdays with `L`.
    dow_last: u8,
    /// `(weekday, n)` for `#`.
    dow_nth: Vec<(u32, u32)>,
    /// Debian's rule: a day field starting with `*` ANDs the two day fields.
    day_and: bool,
    /// Wall-clock matching with the gap/fold fixups (5 fields, minute and hour not starting `*`).
    wall_clock: bool,
    /// The fields as given (upper-cased), with `0` prepended for 5-field expressions.
    fields: Vec<String>,
    /// Written with 5 fields.
    five: bool,
}

fn field_err(f: F, term: &str, why: &str) -> String {
    format!("{} field `{term}` {why}", FIELD_NAMES[f as usize])
}

impl F {
    fn range(self) -> (u32, u32) {
        RANGES[self as usize]
    }

    fn digits(self, s: &str, whole: &str) -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(field_err(self, whole, &self.expected()));
        }
        s.parse::<u32>()
            .map_err(|_| field_err(self, whole, &self.expected()))
    }

    fn expected(self) -> String {
        let (lo, hi) = self.range();
        match self {
            F::Month => {
                format!("is not valid (expected {lo}-{hi} or JAN-DEC, with `*`, `,`, `-`, `/`)")
            }
            F::Dow => format!(
                "is not valid (expected {lo}-{hi} or SUN-SAT, with `*`, `,`, `-`, `/`, `L`, `#`)"
            ),
            F::Day => {
                format!("is not valid (expected {lo}-{hi}, `L` or `LW`, with `*`, `,`, `-`, `/`)")
            }
            _ => format!("is not valid (expected {lo}-{hi}, with `*`, `,`, `-`, `/`)"),
        }
    }

    /// A single value: a number in range, or a name.
    fn int(self, s: &str, whole: &str) -> Result<u32, String> {
        if self == F::Month
            && let Some(i) = MONTHS.iter().position(|m| *m == s)
        {
            return Ok(i as u32 + 1);
        }
        if self == F::Dow
            && let Some(i) = DAYS.iter().position(|d| *d == s)
        {
            return Ok(i as u32);
        }
        let v = self.digits(s, whole)?;
        let (lo, hi) = self.range();
        if v < lo || v > hi {
            return Err(field_err(self, s, &format!("out of range {lo}-{hi}")));
        }
        Ok(v)
    }

    fn full(self) -> Vec<Item> {
        let (lo, hi) = self.range();
        (lo..=hi).map(Item::Value).collect()
    }

    /// cronsim's `Field.parse`, term by term, in its order of checks.
    fn parse(self, s: &str, whole: &str) -> Result<Vec<Item>, String> {
        if s == "*" {
            return Ok(self.full());
        }
        if s.contains(',') {
            let mut out = Vec::new();
            for term in s.split(',') {
                out.extend(self.parse(term, whole)?);
            }
            out.sort();
            out.dedup();
            return Ok(out);
        }
        if self == F::Dow && s.contains('L') {
            let value = &s[..s.len() - 1];
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || !s.ends_with('L') {
                return Err(field_err(
                    self,
                    s,
                    "is not valid (`L` in day-of-week follows a weekday number, e.g. 5L for the last Friday)",
                ));
            }
            return Ok(vec![Item::LastDow(self.int(value, s)?)]);
        }
        if self == F::Dow
            && let Some((term, nth)) = s.split_once('#')
        {
            let n = self.digits(nth, s)?;
            if !(1..=5).contains(&n) {
                return Err(field_err(self, s, "is not valid (the n in `#n` is 1 to 5)"));
            }
            return Ok(vec![Item::Nth(self.int(term, s)?, n)]);
        }
        if let Some((term, step)) = s.split_once('/') {
            let step = self.digits(step, s)?;
            if step == 0 {
                return Err(field_err(self, s, "has a step of 0"));
            }
            let items = self.parse(term, whole)?;
            if items == [Item::Last] || items == [Item::LastWeekday] {
                return Ok(items);
            }
            let step = step as usize;
            if let [Item::Value(start)] = items[..] {
                let (_, hi) = self.range();
                return Ok((start..=hi).step_by(step).map(Item::Value).collect());
            }
            let mut sorted = items;
            sorted.sort();
            return Ok(sorted.into_iter().step_by(step).collect());
        }
        if let Some((a, b)) = s.split_once('-') {
            let start = self.int(a, s)?;
            let end = self.int(b, s)?;
            if end < start {
                return Err(field_err(
                    self,
                    s,
                    "is a range whose end comes before its start",
                ));
            }
            return Ok((start..=end).map(Item::Value).collect());
        }
        if self == F::Day && s == "LW" {
            return Ok(vec![Item::LastWeekday]);
        }
        if self == F::Day && s == "L" {
            return Ok(vec![Item::Last]);
        }
        Ok(vec![Item::Value(self.int(s, whole)?)])
    }
}

fn values(items: &[Item]) -> impl Iterator<Item = u32> + '_ {
    items.iter().filter_map(|i| match i {
        Item::Value(v) => Some(*v),
        _ => None,
    })
}

impl CronExpr {
    fn parse(expr: &str) -> Result<CronExpr, String> {
        let mut parts: Vec<String> = expr
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        let five = parts.len() == 5;
        if five {
            parts.insert(0, "0".into());
        }
        if parts.len() != 6 {
            let n = if five { 5 } else { parts.len() };
            return Err(format!(
                "`{}` has {n} field(s); expected 5 (minute hour day-of-month month day-of-week), 6 with a leading seconds field, `every 5m`, `daily at 09:30` or a macro such as @hourly",
                expr.trim()
            ));
        }
        let day_and = parts[3].starts_with('*') || parts[5].starts_with('*');
        let fields = [F::Second, F::Minute, F::Hour, F::Day, F::Month, F::Dow];
        let mut parsed = Vec::with_capacity(6);
        for (f, text) in fields.iter().zip(&parts) {
            parsed.push(f.parse(text, text)?);
        }
        let mask = |items: &[Item]| values(items).fold(0u64, |m, v| m | (1u64 << v));
        let days = mask(&parsed[3]) as u32;
        let months = mask(&parsed[4]) as u16;
        let mut dows = 0u8;
        let mut dow_last = 0u8;
        let mut dow_nth = Vec::new();
        for item in &parsed[5] {
            match *item {
                Item::Value(v) => dows |= 1 << (v % 7),
                Item::LastDow(v) => dow_last |= 1 << (v % 7),
                Item::Nth(v, n) => dow_nth.push((v % 7, n)),
                _ => {}
            }
        }
        let day_last = parsed[3].contains(&Item::Last);
        let day_last_weekday = parsed[3].contains(&Item::LastWeekday);
        if day_and && !day_last && !day_last_weekday {
            let min_day = values(&parsed[3]).min().unwrap_or(1);
            let longest = values(&parsed[4])
                .map(|m| DAYS_IN_MONTH[m as usize])
                .max()
                .unwrap_or(31);
            if min_day > 29 && min_day > longest {
                return Err(field_err(
                    F::Day,
                    &parts[3],
                    &format!(
                        "never matches: no month in `{}` has that many days",
                        parts[4]
                    ),
                ));
            }
        }
        Ok(CronExpr {
            seconds: mask(&parsed[0]),
            minutes: mask(&parsed[1]),
            hours: mask(&parsed[2]) as u32,
            days,
            day_last,
            day_last_weekday,
            months,
            dows,
            dow_last,
            dow_nth,
            day_and,
            wall_clock: five && !parts[1].starts_with('*') && !parts[2].starts_with('*'),
            fields: parts,
            five,
        })
    }

    fn describe(&self) -> String {
        let shown = if self.five {
            self.fields[1..].join(" ")
        } else {
            self.fields.join(" ")
        };
        let rule = if self.day_and {
            "both day fields must match"
        } else {
            "either day field may match"
        };
        let dst = if self.wall_clock {
            "wall-clock time: in a DST gap it runs right after the jump, in a fold once"
        } else {
            "real time"
        };
        format!("cron `{shown}` ({rule}; {dst})")
    }

    fn match_dom(&self, d: NaiveDate) -> bool {
        if self.days & (1 << d.day()) != 0 {
            return true;
        }
        if self.day_last_weekday && d.day() >= 26 && d.day() == last_weekday(d.year(), d.month()) {
            return true;
        }
        self.day_last && d.day() >= 28 && d.day() == days_in_month(d.year(), d.month())
    }

    fn match_dow(&self, d: NaiveDate) -> bool {
        let dow = d.weekday().num_days_from_sunday();
        if self.dows & (1 << dow) != 0 {
            return true;
        }
        if self.dow_last & (1 << dow) != 0 && d.day() + 7 > days_in_month(d.year(), d.month()) {
            return true;
        }
        let idx = d.day().div_ceil(7);
        self.dow_nth.iter().any(|&(w, n)| w == dow && n == idx)
    }

    fn match_day(&self, d: NaiveDate) -> bool {
        if self.day_and {
            self.match_dom(d) && self.match_dow(d)
        } else {
            self.match_dom(d) || self.match_dow(d)
        }
    }

    /// The first fire at or after one second past `from` (cronsim's `next` from a start time).
    fn next_from(&self, from: DateTime<Utc>, tz: &Zone) -> Option<DateTime<Utc>> {
        let mut c = Cursor::start(self, from, tz);
        c.tick(1);
        if !c.advance() {
            return None;
        }
        Some(c.result())
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match (first, next) {
        (Some(a), Some(b)) => u32::try_from((b - a).num_days()).unwrap_or(31),
        _ => 31,
    }
}

fn last_weekday(year: i32, month: u32) -> u32 {
    let last = days_in_month(year, month);
    match NaiveDate::from_ymd_opt(year, month, last).map(|d| d.weekday().num_days_from_monday()) {
        Some(6) => last - 2,
        Some(5) => last - 1,
        _ => last,
    }
}

/// cronsim's iteration state: a local date-time (with PEP 495's `fold`) that ticks either on the
/// wall clock (`wall`: the gap/fold fixups) or in real time through UTC.
struct Cursor<'a> {
    cron: &'a CronExpr,
    tz: &'a Zone,
    dt: NaiveDateTime,
    fold: bool,
    wall: bool,
}

impl<'a> Cursor<'a> {
    fn start(cron: &'a CronExpr, from: DateTime<Utc>, tz: &'a Zone) -> Self {
        let from = from.with_nanosecond(0).unwrap_or(from);
        let (dt, fold) = from_utc(tz, from);
        let wall = cron.wall_clock && !tz.is_utc();
        Self {
            cron,
            tz,
            dt,
            fold: fold && !wall,
            wall,
        }
    }

    fn tick(&mut self, secs: i64) {
        let delta = TimeDelta::seconds(secs);
        if self.wall {
            self.dt += delta;
        } else {
            let utc = to_utc(self.tz, self.dt, self.fold) + delta;
            (self.dt, self.fold) = from_utc(self.tz, utc);
        }
    }

    fn set(&mut self, dt: NaiveDateTime) {
        self.dt = dt;
    }

    fn midnight(&mut self, d: NaiveDate) {
        self.dt = d.and_time(NaiveTime::MIN);
        self.fold = false;
    }

    fn advance(&mut self) -> bool {
        let start_year = self.dt.year();
        loop {
            self.advance_month();
            if self.dt.year() > start_year + 50 {
                return false;
            }
            if self.advance_day()
                || self.advance_hour()
                || self.advance_minute()
                || self.advance_second()
            {
                continue;
            }
            return true;
        }
    }

    fn advance_month(&mut self) {
        if self.cron.months & (1 << self.dt.month()) != 0 {
            return;
        }
        let mut needle = self.dt.date();
        while self.cron.months & (1 << needle.month()) == 0 {
            let first = needle.with_day(1).unwrap_or(needle);
            needle = first
                .checked_add_days(Days::new(32))
                .and_then(|d| d.with_day(1))
                .unwrap_or(NaiveDate::MAX);
            if needle == NaiveDate::MAX {
                break;
            }
        }
        self.midnight(needle);
    }

    fn advance_day(&mut self) -> bool {
        let mut needle = self.dt.date();
        if self.cron.match_day(needle) {
            return false;
        }
        while !self.cron.match_day(needle) {
            needle = needle.succ_opt().unwrap_or(NaiveDate::MAX);
            if needle.day() == 1 || needle == NaiveDate::MAX {
                break;
            }
        }
        self.midnight(needle);
        true
    }

    fn advance_hour(&mut self) -> bool {
        if self.cron.hours & (1 << self.dt.hour()) != 0 {
            return false;
        }
        let top = self
            .dt
            .date()
            .and_hms_opt(self.dt.hour(), 0, 0)
            .unwrap_or(self.dt);
        self.set(top);
        while self.cron.hours & (1 << self.dt.hour()) == 0 {
            self.tick(3600);
            if self.dt.hour() == 0 {
                break;
            }
        }
        true
    }

    fn advance_minute(&mut self) -> bool {
        if self.cron.minutes & (1 << self.dt.minute()) != 0 {
            return false;
        }
        let top = self.dt.with_second(0).unwrap_or(self.dt);
        self.set(top);
        if self.cron.minutes.count_ones() == 1 {
            let target = i64::from(self.cron.minutes.trailing_zeros());
            let delta = (target - i64::from(self.dt.minute())).rem_euclid(60);
            self.tick(delta * 60);
        }
        while self.cron.minutes & (1 << self.dt.minute()) == 0 {
            self.tick(60);
            if self.dt.minute() == 0 {
                break;
            }
        }
        true
    }

    fn advance_second(&mut self) -> bool {
        if self.cron.seconds & (1 << self.dt.second()) != 0 {
            return false;
        }
        if self.cron.seconds.count_ones() == 1 {
            let target = i64::from(self.cron.seconds.trailing_zeros());
            let delta = (target - i64::from(self.dt.second())).rem_euclid(60);
            self.tick(delta);
        }
        while self.cron.seconds & (1 << self.dt.second()) == 0 {
            self.tick(1);
            if self.dt.second() == 0 {
                break;
            }
        }
        true
    }

    /// The instant of the matched time; on the wall clock a time inside a gap moves forward a
    /// minute at a time until it exists, and an ambiguous one is taken the first time.
    fn result(&mut self) -> DateTime<Utc> {
        if self.wall {
            let mut guard = 0;
            while matches!(self.tz.from_local_datetime(&self.dt), LocalResult::None)
                && guard < 2 * 24 * 60
            {
                self.dt += TimeDelta::minutes(1);
                guard += 1;
            }
            return to_utc(self.tz, self.dt, false);
        }
        to_utc(self.tz, self.dt, self.fold)
    }
}

/// A local time to an instant, as Python's `zoneinfo` does it (PEP 495): in a fold `fold` picks
/// the second occurrence; in a gap, `fold = false` uses the offset from before the transition
/// (so the instant lands after the gap) and `fold = true` the one after it.
fn to_utc(tz: &Zone, local: NaiveDateTime, fold: bool) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => if fold { b } else { a }.with_timezone(&Utc),
        LocalResult::None => {
            let offset = gap_offset(tz, local, !fold);
            (local - TimeDelta::seconds(i64::from(offset.local_minus_utc()))).and_utc()
        }
    }
}

/// The offset in force just before (`before`) or just after a gap containing `local`.
fn gap_offset(tz: &Zone, local: NaiveDateTime, before: bool) -> FixedOffset {
    let step = TimeDelta::minutes(if before { -15 } else { 15 });
    let mut probe = local;
    for _ in 0..(4 * 48) {
        probe += step;
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return t.offset().fix(),
            LocalResult::Ambiguous(a, b) => return if before { b } else { a }.offset().fix(),
            LocalResult::None => {}
        }
    }
    tz.offset_from_utc_datetime(&local).fix()
}

/// An instant to local time and its PEP 495 `fold` (true for the second pass of an ambiguous time).
fn from_utc(tz: &Zone, t: DateTime<Utc>) -> (NaiveDateTime, bool) {
    let local = t.with_timezone(tz).naive_local();
    let fold = match tz.from_local_datetime(&local) {
        LocalResult::Ambiguous(_, b) => b.with_timezone(&Utc) == t,
        _ => false,
    };
    (local, fold)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
