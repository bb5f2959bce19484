#![allow(
    clippy::disallowed_methods,
    reason = "tests start real programs and read their own variables"
)]
use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn next(expr: &str, tz: &str, after: &str) -> String {
    Schedule::parse(expr, Some(tz))
        .unwrap()
        .next_after(t(after))
        .unwrap()
        .to_rfc3339()
}

fn err(expr: &str) -> String {
    Schedule::parse(expr, Some("UTC")).unwrap_err()
}

#[test]
fn spring_forward_fixed_time_runs_right_after_the_jump() {
    // Berlin jumps from 02:00 to 03:00 on 2024-03-31.
    assert_eq!(
        next("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z"),
        "2024-03-31T01:00:00+00:00"
    );
    assert_eq!(
        next("30 2 * * *", "Europe/Berlin", "2024-03-31T01:00:00Z"),
        "2024-04-01T00:30:00+00:00"
    );
    // New York jumps from 02:00 to 03:00 on 2024-03-10.
    assert_eq!(
        next("0 2 * * *", "America/New_York", "2024-03-09T12:00:00Z"),
        "2024-03-10T07:00:00+00:00"
    );
}

#[test]
fn fall_back_fixed_time_runs_once_and_wildcards_twice() {
    // Berlin repeats 02:00-03:00 on 2024-10-27 (00:00-01:00 UTC at +02, 01:00-02:00 at +01).
    let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    let fires = s.upcoming(t("2024-10-26T12:00:00Z"), 2);
    assert_eq!(
        fires,
        vec![t("2024-10-27T00:30:00Z"), t("2024-10-28T01:30:00Z")]
    );
    let hourly = Schedule::parse("0 * * * *", Some("Europe/Berlin")).unwrap();
    let fires = hourly.upcoming(t("2024-10-26T23:30:00Z"), 3);
    // 01:00 +02, 02:00 +02, 02:00 +01: every real hour.
    assert_eq!(
        fires,
        vec![
            t("2024-10-27T00:00:00Z"),
            t("2024-10-27T01:00:00Z"),
            t("2024-10-27T02:00:00Z")
        ]
    );
}

#[test]
fn day_fields_and_or_rule() {
    // Neither starts with `*`: OR. 2024-06-03 is a Monday.
    assert_eq!(
        next("0 0 1-7 * MON", "UTC", "2024-06-07T12:00:00Z"),
        "2024-06-10T00:00:00+00:00"
    );
    // `*/2` in day-of-week: AND with 1-7 (Debian's rule): the first of 1..7 that is Sun/Tue/Thu/Sat.
    assert_eq!(
        next("0 0 1-7 * */2", "UTC", "2024-06-07T12:00:00Z"),
        "2024-07-02T00:00:00+00:00"
    );
}

#[test]
fn forms_and_macros() {
    assert_eq!(
        next("@hourly", "UTC", "2024-01-01T10:59:59Z"),
        "2024-01-01T11:00:00+00:00"
    );
    assert_eq!(
        next("@weekly", "UTC", "2024-01-01T00:00:00Z"),
        "2024-01-07T00:00:00+00:00"
    );
    assert_eq!(
        next("@yearly", "UTC", "2024-01-01T00:00:00Z"),
        "2025-01-01T00:00:00+00:00"
    );
    assert_eq!(
        next("daily at 9:30", "UTC", "2024-01-01T10:00:00Z"),
        "2024-01-02T09:30:00+00:00"
    );
    assert_eq!(
        next("  09:30 ", "UTC", "2024-01-01T09:00:00Z"),
        "2024-01-01T09:30:00+00:00"
    );
    assert_eq!(
        next("*/20 * * * * *", "UTC", "2024-01-01T00:00:00Z"),
        "2024-01-01T00:00:20+00:00"
    );
    assert_eq!(
        next("0 0 29 2 *", "UTC", "2024-03-01T00:00:00Z"),
        "2028-02-29T00:00:00+00:00"
    );
    assert_eq!(
        next("0 12 L * *", "UTC", "2024-02-01T00:00:00Z"),
        "2024-02-29T12:00:00+00:00"
    );
    assert_eq!(
        next("0 12 * * 5L", "UTC", "2024-02-01T00:00:00Z"),
        "2024-02-23T12:00:00+00:00"
    );
    assert_eq!(
        next("0 12 * * MON#2", "UTC", "2024-02-01T00:00:00Z"),
        "2024-02-12T12:00:00+00:00"
    );
    assert_eq!(
        next("0 9 * JAN-MAR mon-fri", "UTC", "2024-03-29T10:00:00Z"),
        "2025-01-01T09:00:00+00:00"
    );
}

#[test]
fn every_is_anchored() {
    let anchor = t("2024-01-01T00:00:07Z");
    let s = Schedule::parse("every 2h30m", None)
        .unwrap()
        .with_anchor(anchor);
    assert_eq!(s.next_after(anchor), Some(t("2024-01-01T02:30:07Z")));
    assert_eq!(
        s.next_after(t("2024-01-01T02:30:07Z")),
        Some(t("2024-01-01T05:00:07Z"))
    );
    assert_eq!(
        s.next_after(t("2023-01-01T00:00:00Z")),
        Some(t("2024-01-01T02:30:07Z"))
    );
    // The seed's spelling, with a space before the unit.
    let seed = Schedule::parse("every 5 m", None).unwrap();
    assert_eq!(seed.interval(), Some(Duration::from_secs(300)));
    assert_eq!(
        seed.next_after(t("2024-01-01T00:01:00Z")),
        Some(t("2024-01-01T00:05:00Z"))
    );
}

#[test]
fn errors_say_what_was_expected() {
    assert_eq!(err("61 * * * *"), "minute field `61` out of range 0-59");
    assert_eq!(err("0 24 * * *"), "hour field `24` out of range 0-23");
    assert!(err("0 0 * 13 *").contains("month field `13` out of range 1-12"));
    assert!(
        err("0 0 * * FUNDAY")
            .contains("day-of-week field `FUNDAY` is not valid (expected 0-7 or SUN-SAT")
    );
    assert!(err("* * *").contains("has 3 field(s); expected 5"));
    assert!(err("*/0 * * * *").contains("step of 0"));
    assert!(err("5-1 * * * *").contains("end comes before its start"));
    assert!(err("0 0 30 2 *").contains("never matches"));
    assert!(err("@reboot").contains("not supported"));
    assert!(err("@fortnightly").contains("unknown macro"));
    assert!(err("every 5").contains("needs a unit"));
    assert!(err("every 500ms").contains("at least 1s"));
    assert!(err("daily at 25:00").contains("HH:MM"));
    assert!(err("").contains("empty schedule"));
    let tz = Schedule::parse("@daily", Some("Europe/Berlinn")).unwrap_err();
    assert!(
        tz.contains("unknown time zone `Europe/Berlinn`") && tz.contains("Europe/Berlin"),
        "{tz}"
    );
}

const ZONES: [&str; 4] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
];

/// Instants where the zone's offset changes in 2024-2025.
fn transitions(tz: &Zone) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut at = t("2024-01-01T00:00:00Z");
    let end = t("2026-01-01T00:00:00Z");
    let mut prev = tz.offset_from_utc_datetime(&at.naive_utc()).fix();
    while at < end {
        let next = at + TimeDelta::minutes(15);
        let off = tz.offset_from_utc_datetime(&next.naive_utc()).fix();
        if off != prev {
            out.push(next);
            prev = off;
        }
        at = next;
    }
    out
}

#[test]
fn fires_increase_and_skip_gaps_and_folds_once() {
    let exprs = [
        "0 2 * * *",
        "30 2 * * *",
        "0 1 * * *",
        "*/30 * * * *",
        "15 1,2,3 * * *",
        "0 */2 * * *",
        "*/7 * * * * *",
    ];
    for zone in ZONES {
        let tz = Zone::named(zone).unwrap();
        for tr in transitions(&tz) {
            for expr in exprs {
                let s = Schedule::parse(expr, Some(zone)).unwrap();
                let fires = s.upcoming(tr - TimeDelta::hours(30), 80);
                assert!(
                    fires.windows(2).all(|w| w[0] < w[1]),
                    "{expr} {zone}: not increasing {fires:?}"
                );
                let wall = !expr.starts_with('*')
                    && !expr.contains(" */")
                    && !expr.contains(" * * * * *")
                    && expr.split_whitespace().count() == 5;
                let mut seen_local = std::collections::HashSet::new();
                for f in &fires {
                    let local = f.with_timezone(&tz);
                    let c = s_cron(&s);
                    // A fire matches the expression on the wall clock, or is the first instant
                    // after a gap that swallowed a matching time.
                    let m = local.naive_local();
                    let exact = c.minutes & (1 << m.minute()) != 0
                        && c.hours & (1 << m.hour()) != 0
                        && c.seconds & (1 << m.second()) != 0;
                    let after_gap = tz
                        .offset_from_utc_datetime(&(*f - TimeDelta::minutes(1)).naive_utc())
                        .fix()
                        != local.offset().fix();
                    assert!(
                        exact || (wall && after_gap),
                        "{expr} {zone}: {f} ({local}) matches nothing"
                    );
                    if wall {
                        assert!(
                            seen_local.insert(m),
                            "{expr} {zone}: {m} fired twice (fold)"
                        );
                    }
                }
            }
        }
    }
}

fn s_cron(s: &Schedule) -> &CronExpr {
    match &s.kind {
        Kind::Cron(c) => c,
        Kind::Every(_) => panic!("not cron"),
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle: the Python package `cronsim` (pinned by scripts/test.sh) computes the same fires.

const ORACLE: &str = r#"
import json, sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from cronsim import CronSim
out = []
for case in json.load(sys.stdin):
    tz = ZoneInfo(case["tz"])
    start = datetime.fromtimestamp(case["start"], tz=tz)
    it = CronSim(case["expr"], start)
    fires = []
    try:
        while len(fires) < case["n"]:
            ts = int(next(it).timestamp())
            # cronsim may answer a start in a fold's second pass with a wall-clock time of the
            # first pass; claw's next_after is strictly after, so both skip such an answer.
            if ts > case["start"]:
                fires.append(ts)
    except StopIteration:
        pass
    out.append(fires)
json.dump(out, sys.stdout)
"#;

/// The same schedule in cronsim's syntax (it has no macros and no `daily at`).
fn cronsim_form(expr: &str) -> String {
    match expr {
        "@hourly" => "0 * * * *".into(),
        "@daily" => "0 0 * * *".into(),
        "@weekly" => "0 0 * * 0".into(),
        "@monthly" => "0 0 1 * *".into(),
        "@yearly" => "0 0 1 1 *".into(),
        "daily at 7:05" => "5 7 * * *".into(),
        "23:59" => "59 23 * * *".into(),
        other => other.into(),
    }
}

fn oracle_python() -> Option<std::path::PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("CLAW_CRONSIM_PYTHON") {
        candidates.push(std::path::PathBuf::from(p));
    }
    candidates.push(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cronsim-venv/bin/python3"),
    );
    candidates.push("python3".into());
    candidates.into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import cronsim"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn agrees_with_cronsim() {
    let Some(python) = oracle_python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cronsim is not installed: scripts/test.sh installs it into target/cronsim-venv"
        );
        eprintln!(
            "SKIPPED agrees_with_cronsim: the Python package cronsim is not installed (run scripts/test.sh)"
        );
        return;
    };
    let generic = [
        "* * * * *",
        "*/15 * * * *",
        "5/15 * * * *",
        "0 9-17/2 * * *",
        "1-10/3 * * * *",
        "0 0 1,15 * *",
        "0 0 * * MON-FRI",
        "0 0 * JAN,JUL *",
        "30 4 1-7 * */2",
        "0 0 1-7 * MON",
        "0 0 */2 * MON",
        "0 0 13 * FRI",
        "0 0 29 2 *",
        "0 0 L * *",
        "0 0 LW * *",
        "0 0 * * 5L",
        "0 0 * * MON#1",
        "0 0 * * 7",
        "0 0 * * 0-7/3",
        "0 0 31 * *",
        "0 12 * * SUN,SAT",
        "59 23 31 12 *",
        "0 0 1 */3 *",
        "*/20 * * * * *",
        "30 */5 * * * *",
        "0 0 0 1 1 *",
        "0 0 * * mon#5",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "daily at 7:05",
        "23:59",
        "0,30 8-18 * * 1-5",
    ];
    let dst = [
        "0 2 * * *",
        "30 2 * * *",
        "0 1 * * *",
        "*/30 * * * *",
        "0 3 * * *",
        "15 2 * * SUN",
        "0 0,2,4 * * *",
        "45 1 * * *",
        "0 */2 * * *",
        "30 1-3 * * *",
        "* 2 * * *",
        "0 2 * * * *",
        "*/10 2 * * *",
        "0 * * * *",
    ];
    let mut cases: Vec<(String, String, DateTime<Utc>)> = Vec::new();
    let generic_starts = [
        t("2024-01-15T10:17:23Z"),
        t("2024-02-28T23:59:59Z"),
        t("2025-06-30T12:00:00Z"),
    ];
    for expr in generic {
        for zone in ["UTC", "Europe/Berlin"] {
            for s in generic_starts {
                cases.push((expr.into(), zone.into(), s));
            }
        }
    }
    for expr in dst {
        for zone in ZONES {
            let tz = Zone::named(zone).unwrap();
            let mut starts: Vec<DateTime<Utc>> = generic_starts.to_vec();
            for tr in transitions(&tz) {
                for d in [-26 * 60, -120, -61, -60, -30, -1, 0, 15, 30, 59, 61] {
                    starts.push(
                        tr + TimeDelta::minutes(d)
                            + TimeDelta::seconds(if d % 2 == 0 { 0 } else { 7 }),
                    );
                }
            }
            for s in starts {
                cases.push((expr.into(), zone.into(), s));
            }
        }
    }
    const N: usize = 50;
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|(e, z, s)| serde_json::json!({"expr": cronsim_form(e), "tz": z, "start": s.timestamp(), "n": N}))
        .collect();
    let mut child = std::process::Command::new(&python)
        .args(["-c", ORACLE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let payload = serde_json::to_vec(&input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &payload));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "the cronsim oracle failed");
    let want: Vec<Vec<i64>> = serde_json::from_slice(&out.stdout).unwrap();
    let mut failures = Vec::new();
    for ((expr, zone, start), want) in cases.iter().zip(&want) {
        let s = Schedule::parse(expr, Some(zone)).unwrap();
        let got: Vec<i64> = s
            .upcoming(*start, N)
            .iter()
            .map(DateTime::timestamp)
            .collect();
        if &got != want {
            let i = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            let show = |v: Option<&i64>| {
                v.and_then(|ts| DateTime::from_timestamp(*ts, 0))
                    .map(|d| d.with_timezone(s.tz()).to_rfc3339())
            };
            failures.push(format!(
                "`{expr}` in {zone} from {start}: fire #{i}: claw {:?}, cronsim {:?}",
                show(got.get(i)),
                show(want.get(i))
            ));
        }
    }
    let total: usize = want.iter().map(Vec::len).sum();
    eprintln!(
        "cronsim oracle: {} cases, {total} fires compared",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
