//! Per-schedule policies and the catch-up planner.
//!
//! The planner is pure: given a schedule, the last fire that was handled (persisted; the
//! schedule's creation time when there is none), the current time and the policy, it says which
//! fires to enqueue now, which were missed and why, and when the next one is due. The daemon
//! persists the answer (each enqueued fire is the row `(schedule, scheduled_for)` under a unique
//! key) and sleeps until `next_due`; nothing here reads a clock.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest as _, Sha256};

use super::Schedule;

/// What to do with fires that passed while claw was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Run none of them; only fires due now (within [`Policy::grace`]) run.
    None,
    /// Run the most recent one (if it is inside the window).
    #[default]
    Last,
    /// Run every one inside the window, at most `max_catch_up` (the most recent ones).
    All,
}

impl CatchUp {
    pub const NAMES: [&'static str; 3] = ["none", "last", "all"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "last" => Some(Self::Last),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Last => "last",
            Self::All => "all",
        }
    }
}

/// What to do with a fire while the previous run of the same schedule is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Do not start it (recorded as skipped).
    #[default]
    Skip,
    /// Start it when the running one ends.
    Queue,
    /// Start it at once, beside the running one.
    Allow,
}

impl Overlap {
    pub const NAMES: [&'static str; 3] = ["skip", "queue", "allow"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(Self::Skip),
            "queue" => Some(Self::Queue),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Queue => "queue",
            Self::Allow => "allow",
        }
    }
}

/// The per-schedule options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub catch_up: CatchUp,
    /// Missed fires older than this (before `now - window`) are never run.
    pub catch_up_window: Duration,
    /// At most this many missed fires are run at once (`catch_up: all`).
    pub max_catch_up: u32,
    pub overlap: Overlap,
    /// Fires are due this much later at most (a stable per-schedule offset in `[0, jitter)`).
    pub jitter: Option<Duration>,
    /// A fire whose due time passed less than this long ago is on time, not missed.
    pub grace: Duration,
}

pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_CATCH_UP: u32 = 10;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

impl Default for Policy {
    fn default() -> Self {
        Self {
            catch_up: CatchUp::Last,
            catch_up_window: DEFAULT_CATCH_UP_WINDOW,
            max_catch_up: DEFAULT_MAX_CATCH_UP,
            overlap: Overlap::Skip,
            jitter: None,
            grace: DEFAULT_GRACE,
        }
    }
}

/// The stable jitter offset of a schedule: the first 8 bytes of `sha256(id)` as a big-endian
/// integer, modulo the jitter in milliseconds. The same id always gets the same offset, on every
/// machine and across restarts, so fires spread out without moving around.
pub fn jitter_offset(id: &str, jitter: Option<Duration>) -> Duration {
    let Some(j) = jitter else {
        return Duration::ZERO;
    };
    let ms = u64::try_from(j.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % ms)
}

/// One fire to enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// The nominal time (the unique key with the schedule).
    pub scheduled_for: DateTime<Utc>,
    /// When it is due: `scheduled_for` plus the jitter offset.
    pub due_at: DateTime<Utc>,
    /// Whether it is a missed fire being caught up (rather than one due now).
    pub late: bool,
}

/// Why fires were not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    /// `catch_up: none`.
    PolicyNone,
    /// `catch_up: last`: a later fire runs instead.
    Superseded,
    /// Older than `catch_up_window`.
    OutsideWindow,
    /// Beyond `max_catch_up`.
    OverMax,
}

impl MissReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PolicyNone => "catch_up_none",
            Self::Superseded => "superseded",
            Self::OutsideWindow => "outside_window",
            Self::OverMax => "over_max_catch_up",
        }
    }
}

/// A run of missed fires with one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    pub reason: MissReason,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub count: u64,
    /// False when counting stopped at [`COUNT_CAP`] (then `count` is a lower bound).
    pub exact: bool,
}

/// Missed fires are counted one by one up to this many per plan.
pub const COUNT_CAP: u64 = 100_000;

/// What the planner decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Oldest first.
    pub enqueue: Vec<Fire>,
    /// At most one entry per reason.
    pub missed: Vec<Missed>,
    /// The newest fire that is due (enqueued or missed): persist it as the last fire.
    pub last_fire: Option<DateTime<Utc>>,
    /// The next nominal fire after the due ones, and when it is due (with jitter).
    pub next: Option<DateTime<Utc>>,
    pub next_due: Option<DateTime<Utc>>,
}

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Decides what to do at `now` for a schedule whose last handled fire is `last` (or its creation
/// time). `id` is the schedule's stable id (for the jitter offset).
pub fn plan(
    schedule: &Schedule,
    id: &str,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Plan {
    let offset = td(jitter_offset(id, policy.jitter));
    let window_start = now.checked_sub_signed(td(policy.catch_up_window));
    let mut out = Plan::default();
    let mut outside: Option<Missed> = None;
    // Fires inside the window that are due, oldest first (bounded: see below).
    let mut due: Vec<DateTime<Utc>> = Vec::new();
    let mut dropped_in_window: Option<Missed> = None;
    let mut cursor = last;
    while let Some(f) = schedule.next_after(cursor) {
        let due_at = f.checked_add_signed(offset).unwrap_or(f);
        if due_at > now {
            out.next = Some(f);
            out.next_due = Some(due_at);
            break;
        }
        out.last_fire = Some(f);
        if window_start.is_some_and(|w| f < w) {
            let m = outside.get_or_insert(Missed {
                reason: MissReason::OutsideWindow,
                first: f,
                last: f,
                count: 0,
                exact: true,
            });
            m.last = f;
            m.count += 1;
            if m.count >= COUNT_CAP {
                // Too many to count: jump to the window.
                m.exact = false;
                cursor = window_start.map_or(f, |w| w - TimeDelta::seconds(1)).max(f);
                continue;
            }
        } else {
            due.push(f);
            // Keep memory bounded: only the newest `max + 1` can ever be enqueued.
            let keep = policy.max_catch_up as usize + 1;
            if due.len() > 2 * keep + 16 {
                let extra = due.len() - keep;
                let dropped: Vec<_> = due.drain(..extra).collect();
                note(&mut dropped_in_window, MissReason::OverMax, &dropped);
            }
        }
        cursor = f;
    }
    if let Some(m) = outside {
        out.missed.push(m);
    }
    // The newest due fire is on time if its due time passed within the grace period.
    let on_time = due
        .last()
        .copied()
        .filter(|f| now - f.checked_add_signed(offset).unwrap_or(*f) <= td(policy.grace));
    let late: Vec<DateTime<Utc>> = match on_time {
        Some(_) => due[..due.len() - 1].to_vec(),
        None => due,
    };
    let fire = |f: DateTime<Utc>, late: bool| Fire {
        scheduled_for: f,
        due_at: f.checked_add_signed(offset).unwrap_or(f),
        late,
    };
    let mut enqueue_late: Vec<DateTime<Utc>> = Vec::new();
    // Late fires dropped while collecting (to bound memory) count under the policy's reason.
    if let Some(m) = dropped_in_window {
        let reason = match policy.catch_up {
            CatchUp::None => MissReason::PolicyNone,
            CatchUp::Last => MissReason::Superseded,
            CatchUp::All => MissReason::OverMax,
        };
        merge(&mut out.missed, Missed { reason, ..m });
    }
    match policy.catch_up {
        CatchUp::None => {
            let mut m = None;
            note(&mut m, MissReason::PolicyNone, &late);
            if let Some(m) = m {
                merge(&mut out.missed, m);
            }
        }
        CatchUp::Last => {
            if on_time.is_some() {
                let mut m = None;
                note(&mut m, MissReason::Superseded, &late);
                if let Some(m) = m {
                    merge(&mut out.missed, m);
                }
            } else if let Some((newest, older)) = late.split_last() {
                if policy.max_catch_up > 0 {
                    enqueue_late.push(*newest);
                    let mut m = None;
                    note(&mut m, MissReason::Superseded, older);
                    if let Some(m) = m {
                        merge(&mut out.missed, m);
                    }
                } else {
                    let mut m = None;
                    note(&mut m, MissReason::OverMax, &late);
                    if let Some(m) = m {
                        merge(&mut out.missed, m);
                    }
                }
            }
        }
        CatchUp::All => {
            let max = policy.max_catch_up as usize;
            let cut = late.len().saturating_sub(max);
            let mut m = None;
            note(&mut m, MissReason::OverMax, &late[..cut]);
            if let Some(m) = m {
                merge(&mut out.missed, m);
            }
            enqueue_late.extend_from_slice(&late[cut..]);
        }
    }
    out.enqueue = enqueue_late.into_iter().map(|f| fire(f, true)).collect();
    if let Some(f) = on_time {
        out.enqueue.push(fire(f, false));
    }
    out
}

fn note(slot: &mut Option<Missed>, reason: MissReason, fires: &[DateTime<Utc>]) {
    let (Some(first), Some(last)) = (fires.first(), fires.last()) else {
        return;
    };
    match slot {
        Some(m) => {
            m.first = m.first.min(*first);
            m.last = m.last.max(*last);
            m.count += fires.len() as u64;
        }
        None => {
            *slot = Some(Missed {
                reason,
                first: *first,
                last: *last,
                count: fires.len() as u64,
                exact: true,
            });
        }
    }
}

fn merge(list: &mut Vec<Missed>, m: Missed) {
    if let Some(existing) = list.iter_mut().find(|x| x.reason == m.reason) {
        existing.first = existing.first.min(m.first);
        existing.last = existing.last.max(m.last);
        existing.count += m.count;
        existing.exact &= m.exact;
    } else {
        list.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hourly() -> Schedule {
        Schedule::parse("0 * * * *", Some("UTC")).unwrap()
    }

    fn policy(catch_up: CatchUp) -> Policy {
        Policy {
            catch_up,
            ..Policy::default()
        }
    }

    fn times(p: &Plan) -> Vec<DateTime<Utc>> {
        p.enqueue.iter().map(|f| f.scheduled_for).collect()
    }

    #[test]
    fn on_time_fire_runs_under_every_policy() {
        for c in [CatchUp::None, CatchUp::Last, CatchUp::All] {
            let p = plan(
                &hourly(),
                "s",
                t("2024-01-01T09:00:00Z"),
                t("2024-01-01T10:00:05Z"),
                &policy(c),
            );
            assert_eq!(times(&p), vec![t("2024-01-01T10:00:00Z")], "{c:?}");
            assert!(!p.enqueue[0].late);
            assert!(p.missed.is_empty());
            assert_eq!(p.last_fire, Some(t("2024-01-01T10:00:00Z")));
            assert_eq!(p.next, Some(t("2024-01-01T11:00:00Z")));
        }
    }

    /// docs/cron.md: only the newest due fire is on time, even when older ones also fell inside
    /// the grace minute (a seconds schedule across a pause of a few seconds).
    #[test]
    fn only_the_newest_fire_of_a_short_pause_is_on_time() {
        let every_10s = Schedule::parse("every 10s", Some("UTC")).unwrap();
        let (last, now) = (t("2024-01-01T10:00:00Z"), t("2024-01-01T10:00:31Z"));
        let none = plan(&every_10s, "s", last, now, &policy(CatchUp::None));
        assert_eq!(times(&none), vec![t("2024-01-01T10:00:30Z")]);
        assert!(!none.enqueue[0].late);
        assert_eq!(none.missed.len(), 1);
        assert_eq!(
            (none.missed[0].reason, none.missed[0].count),
            (MissReason::PolicyNone, 2)
        );
        let all = plan(&every_10s, "s", last, now, &policy(CatchUp::All));
        assert_eq!(
            times(&all),
            vec![
                t("2024-01-01T10:00:10Z"),
                t("2024-01-01T10:00:20Z"),
                t("2024-01-01T10:00:30Z")
            ]
        );
    }

    #[test]
    fn nothing_due_gives_the_next_fire() {
        let p = plan(
            &hourly(),
            "s",
            t("2024-01-01T10:00:00Z"),
            t("2024-01-01T10:30:00Z"),
            &Policy::default(),
        );
        assert!(p.enqueue.is_empty() && p.missed.is_empty() && p.last_fire.is_none());
        assert_eq!(p.next_due, Some(t("2024-01-01T11:00:00Z")));
    }

    #[test]
    fn downtime_under_each_policy() {
        // Down from 10:00 (last fire) to 15:30: fires 11..15 were missed.
        let (last, now) = (t("2024-01-01T10:00:00Z"), t("2024-01-01T15:30:00Z"));
        let none = plan(&hourly(), "s", last, now, &policy(CatchUp::None));
        assert!(none.enqueue.is_empty());
        assert_eq!(none.missed.len(), 1);
        assert_eq!(
            (none.missed[0].reason, none.missed[0].count),
            (MissReason::PolicyNone, 5)
        );
        assert_eq!(none.last_fire, Some(t("2024-01-01T15:00:00Z")));

        let last_p = plan(&hourly(), "s", last, now, &policy(CatchUp::Last));
        assert_eq!(times(&last_p), vec![t("2024-01-01T15:00:00Z")]);
        assert!(last_p.enqueue[0].late);
        assert_eq!(
            (last_p.missed[0].reason, last_p.missed[0].count),
            (MissReason::Superseded, 4)
        );

        let all = plan(
            &hourly(),
            "s",
            last,
            now,
            &Policy {
                max_catch_up: 3,
                ..policy(CatchUp::All)
            },
        );
        assert_eq!(
            times(&all),
            vec![
                t("2024-01-01T13:00:00Z"),
                t("2024-01-01T14:00:00Z"),
                t("2024-01-01T15:00:00Z")
            ]
        );
        assert_eq!(
            (all.missed[0].reason, all.missed[0].count),
            (MissReason::OverMax, 2)
        );
        assert_eq!(all.missed[0].first, t("2024-01-01T11:00:00Z"));
    }

    #[test]
    fn window_bounds_catch_up() {
        // Down for three days; only the last 24 h may be caught up.
        let (last, now) = (t("2024-01-01T00:00:00Z"), t("2024-01-04T00:30:00Z"));
        let p = plan(
            &hourly(),
            "s",
            last,
            now,
            &Policy {
                max_catch_up: 100,
                ..policy(CatchUp::All)
            },
        );
        let outside = p
            .missed
            .iter()
            .find(|m| m.reason == MissReason::OutsideWindow)
            .unwrap();
        assert_eq!(outside.count, 48);
        assert!(outside.exact);
        assert_eq!(p.enqueue.len(), 24); // 2024-01-03T01:00 .. 2024-01-04T00:00
        assert_eq!(p.enqueue[0].scheduled_for, t("2024-01-03T01:00:00Z"));
        // A fire older than the window is never run, even under `last`.
        let p = plan(
            &hourly(),
            "s",
            last,
            t("2024-01-01T02:30:00Z"),
            &Policy {
                catch_up_window: Duration::from_secs(600),
                ..policy(CatchUp::Last)
            },
        );
        assert!(p.enqueue.is_empty());
        assert_eq!(p.missed[0].reason, MissReason::OutsideWindow);
        assert_eq!(p.missed[0].count, 2);
    }

    #[test]
    fn huge_gaps_are_counted_without_enumerating_forever() {
        let every_second = Schedule::parse("* * * * * *", Some("UTC")).unwrap();
        let p = plan(
            &every_second,
            "s",
            t("2020-01-01T00:00:00Z"),
            t("2024-01-01T00:00:00Z"),
            &Policy::default(),
        );
        let outside = p
            .missed
            .iter()
            .find(|m| m.reason == MissReason::OutsideWindow)
            .unwrap();
        assert!(!outside.exact && outside.count >= COUNT_CAP);
        assert_eq!(p.enqueue.len(), 1);
        assert_eq!(p.last_fire, Some(t("2024-01-01T00:00:00Z")));
    }

    #[test]
    fn jitter_is_stable_bounded_and_delays_the_due_time() {
        let j = Some(Duration::from_secs(300));
        let a = jitter_offset("workflow:backup:0 2 * * *", j);
        assert_eq!(a, jitter_offset("workflow:backup:0 2 * * *", j));
        assert!(a < Duration::from_secs(300));
        let offsets: std::collections::HashSet<_> = (0..50)
            .map(|i| jitter_offset(&format!("s{i}"), j))
            .collect();
        assert!(offsets.len() > 40, "offsets do not spread: {offsets:?}");
        assert_eq!(jitter_offset("x", None), Duration::ZERO);
        let pol = Policy {
            jitter: j,
            ..Policy::default()
        };
        let off = TimeDelta::from_std(jitter_offset("id", j)).unwrap();
        // Nominally due, but not yet with the offset: it is the next fire.
        let p = plan(
            &hourly(),
            "id",
            t("2024-01-01T09:00:00Z"),
            t("2024-01-01T10:00:00Z") + off - TimeDelta::milliseconds(1),
            &pol,
        );
        assert!(p.enqueue.is_empty());
        assert_eq!(p.next_due, Some(t("2024-01-01T10:00:00Z") + off));
        let p = plan(
            &hourly(),
            "id",
            t("2024-01-01T09:00:00Z"),
            t("2024-01-01T10:00:00Z") + off,
            &pol,
        );
        assert_eq!(p.enqueue[0].scheduled_for, t("2024-01-01T10:00:00Z"));
        assert_eq!(p.enqueue[0].due_at, t("2024-01-01T10:00:00Z") + off);
    }

    #[test]
    fn next_comes_from_the_last_fire_not_from_start_time() {
        // Replanning with the persisted last fire never enqueues a fire twice.
        let s = hourly();
        let now = t("2024-01-01T10:00:30Z");
        let first = plan(&s, "s", t("2024-01-01T09:00:00Z"), now, &Policy::default());
        assert_eq!(first.enqueue.len(), 1);
        let again = plan(&s, "s", first.last_fire.unwrap(), now, &Policy::default());
        assert!(again.enqueue.is_empty());
    }
}
