//! The scheduler with a clock of the test's own: restarts, downtime and catch-up, overlap, and
//! two schedulers racing on one database.

use std::sync::{Arc, Barrier};

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::config::{Dirs, Settings};
use crate::scheduler::job_schedule_id;
use crate::store::SqliteStore;
use crate::triggers::cron::jobs::{Job, JobType, JobsFile};
use crate::triggers::cron::sources::load_sources;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .with_timezone(&Utc)
}

struct Setup {
    _dir: tempfile::TempDir,
    dirs: Dirs,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let dirs = Dirs {
            home: dir.path().join("home"),
            root: dir.path().join("root"),
        };
        std::fs::create_dir_all(dirs.root.join("workflows")).expect("root");
        dirs.ensure_home().expect("home");
        Self { _dir: dir, dirs }
    }

    /// A fresh engine (another "process") on the same database.
    fn engine(&self) -> Arc<Engine> {
        let store = SqliteStore::open(&self.dirs.db_path()).expect("store");
        Arc::new(Engine::with_store(
            self.dirs.clone(),
            Settings::default(),
            Arc::new(store),
        ))
    }

    fn job(&self, schedule: &str, extra: &[(&str, serde_json::Value)]) -> Job {
        let mut job = Job::new("job", schedule, JobType::Shell, "true");
        job.tz = Some("UTC".into());
        for (k, v) in extra {
            job.extra.insert((*k).to_owned(), v.clone());
        }
        let saved = job.clone();
        JobsFile::in_home(&self.dirs.home)
            .update(|jobs| {
                jobs.push(saved);
                Ok::<_, crate::triggers::cron::jobs::JobsError>(())
            })
            .expect("jobs.json");
        job
    }

    fn scheduler(&self, now: DateTime<Utc>) -> Scheduler {
        let mut s = Scheduler::new(self.engine());
        let sources = load_sources(&self.dirs);
        assert!(sources.problems.is_empty(), "{:?}", sources.problems);
        s.set_entries(sources, now).expect("entries");
        s
    }
}

fn job_fires(tick: &Tick) -> Vec<i64> {
    tick.dispatch
        .iter()
        .filter_map(|d| match d {
            Dispatch::Job { scheduled_for, .. } => Some(*scheduled_for),
            Dispatch::Run { .. } => None,
        })
        .collect()
}

#[test]
fn a_restart_one_second_after_a_fire_instant_still_fires_it() {
    let s = Setup::new();
    s.job("0 * * * *", &[]);
    let mut a = s.scheduler(t("2026-03-01T00:00:00Z"));
    assert!(
        a.tick(t("2026-03-01T00:59:59Z"))
            .expect("tick")
            .dispatch
            .is_empty()
    );
    assert_eq!(a.next_due(), Some(t("2026-03-01T01:00:00Z")));
    drop(a); // claw goes down one second before the fire

    let mut b = s.scheduler(t("2026-03-01T01:00:01Z"));
    let tick = b.tick(t("2026-03-01T01:00:01Z")).expect("tick");
    assert_eq!(
        job_fires(&tick),
        vec![t("2026-03-01T01:00:00Z").timestamp_millis()]
    );
    assert_eq!(tick.missed, 0);
    // And not again, by this scheduler or a third one.
    assert!(
        b.tick(t("2026-03-01T01:00:02Z"))
            .expect("tick")
            .dispatch
            .is_empty()
    );
    let mut c = s.scheduler(t("2026-03-01T01:00:03Z"));
    assert!(
        c.tick(t("2026-03-01T01:00:03Z"))
            .expect("tick")
            .dispatch
            .is_empty()
    );
    assert_eq!(c.next_due(), Some(t("2026-03-01T02:00:00Z")));
}

/// Up at 00:00, one fire at 01:00, down from 01:30 to 04:30: the fires of 02:00, 03:00 and
/// 04:00 passed while claw was down.
fn three_hours_down(catch_up: &str) -> (Tick, crate::store::ScheduleState, Vec<String>) {
    let s = Setup::new();
    let job = s.job("0 * * * *", &[("catch_up", catch_up.into())]);
    let mut a = s.scheduler(t("2026-03-01T00:00:00Z"));
    let first = a.tick(t("2026-03-01T01:00:00.200Z")).expect("tick");
    assert_eq!(
        job_fires(&first),
        vec![t("2026-03-01T01:00:00Z").timestamp_millis()]
    );
    // That job ran and finished.
    s.engine()
        .store
        .set_fire_status(
            &job_schedule_id(&job.id),
            job_fires(&first)[0],
            "ok",
            None,
            0,
        )
        .expect("ok");
    drop(a);
    let mut b = s.scheduler(t("2026-03-01T04:30:00Z"));
    let tick = b.tick(t("2026-03-01T04:30:00Z")).expect("tick");
    assert_eq!(b.next_due(), Some(t("2026-03-01T05:00:00Z")));
    let engine = s.engine();
    let state = engine.store.schedule_states().expect("states").remove(0);
    let fires = engine
        .store
        .list_fires(None, 100)
        .expect("fires")
        .into_iter()
        .map(|f| format!("{} {}", f.scheduled_for, f.status))
        .collect();
    (tick, state, fires)
}

#[test]
fn three_hours_down_with_catch_up_last_runs_the_newest_fire_and_records_two_missed() {
    let (tick, state, fires) = three_hours_down("last");
    assert_eq!(
        job_fires(&tick),
        vec![t("2026-03-01T04:00:00Z").timestamp_millis()]
    );
    assert_eq!(tick.missed, 2);
    assert_eq!((state.fired, state.missed), (2, 2));
    assert_eq!(
        state.last_fire,
        Some(t("2026-03-01T04:00:00Z").timestamp_millis())
    );
    assert_eq!(fires.len(), 2, "{fires:?}");
    let audit = &tick.audit[0];
    assert_eq!(audit.action, crate::audit::Action::ScheduleMissed);
    assert_eq!(audit.detail["reason"], "superseded");
    assert_eq!(audit.detail["count"], 2);
    assert_eq!(audit.detail["first"], "2026-03-01T02:00:00+00:00");
    assert_eq!(audit.detail["last"], "2026-03-01T03:00:00+00:00");
}

#[test]
fn three_hours_down_with_catch_up_all_runs_each_missed_fire_once() {
    let (tick, state, _) = three_hours_down("all");
    let hours: Vec<i64> = ["02", "03", "04"]
        .iter()
        .map(|h| t(&format!("2026-03-01T{h}:00:00Z")).timestamp_millis())
        .collect();
    assert_eq!(job_fires(&tick), hours);
    assert_eq!((state.fired, state.missed), (4, 0));
    // Catch-up fires of one pass run one after another.
    assert!(tick.dispatch.iter().all(|d| matches!(
        d,
        Dispatch::Job {
            serialize: true,
            ..
        }
    )));
}

#[test]
fn three_hours_down_with_catch_up_none_runs_nothing_and_records_three_missed() {
    let (tick, state, fires) = three_hours_down("none");
    assert!(tick.dispatch.is_empty());
    assert_eq!(tick.missed, 3);
    assert_eq!((state.fired, state.missed), (1, 3));
    assert_eq!(tick.audit[0].detail["reason"], "catch_up_none");
    assert_eq!(fires.len(), 1);
}

#[test]
fn a_catch_up_window_and_cap_bound_what_runs() {
    let s = Setup::new();
    s.job(
        "*/10 * * * *",
        &[
            ("catch_up", "all".into()),
            ("catch_up_window", "1h".into()),
            ("max_catch_up", 3.into()),
        ],
    );
    s.scheduler(t("2026-03-01T00:00:00Z"));
    // Down for 5 hours: 30 fires passed, 6 inside the window, the newest 3 run.
    let mut b = s.scheduler(t("2026-03-01T05:05:00Z"));
    let tick = b.tick(t("2026-03-01T05:05:00Z")).expect("tick");
    let expect: Vec<i64> = ["04:40", "04:50", "05:00"]
        .iter()
        .map(|h| t(&format!("2026-03-01T{h}:00Z")).timestamp_millis())
        .collect();
    assert_eq!(job_fires(&tick), expect);
    assert_eq!(tick.missed, 27);
    let reasons: Vec<&str> = tick
        .audit
        .iter()
        .map(|e| e.detail["reason"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["outside_window", "over_max_catch_up"]);
}

fn overlap(policy: &str) -> (Tick, Vec<String>) {
    let s = Setup::new();
    s.job("* * * * *", &[("overlap", policy.into())]);
    let mut a = s.scheduler(t("2026-03-01T00:00:00Z"));
    let first = a.tick(t("2026-03-01T00:01:00.100Z")).expect("tick");
    let Some(Dispatch::Job {
        schedule,
        scheduled_for,
        ..
    }) = first.dispatch.first().cloned()
    else {
        panic!("no first fire: {first:?}");
    };
    // The first fire's job runs longer than the period.
    s.engine()
        .store
        .set_fire_status(&schedule, scheduled_for, "running", None, 0)
        .expect("running");
    let second = a.tick(t("2026-03-01T00:02:00.100Z")).expect("tick");
    let fires = s
        .engine()
        .store
        .list_fires(None, 10)
        .expect("fires")
        .into_iter()
        .map(|f| f.status)
        .collect();
    (second, fires)
}

#[test]
fn overlap_skip_records_the_fire_skipped_while_the_previous_one_runs() {
    let (tick, fires) = overlap("skip");
    assert!(tick.dispatch.is_empty());
    assert_eq!(tick.skipped, 1);
    assert_eq!(tick.audit[0].action, crate::audit::Action::ScheduleSkipped);
    assert_eq!(fires, ["skipped", "running"]);
}

#[test]
fn overlap_queue_and_allow_start_the_fire_behind_or_beside_the_running_one() {
    let (tick, fires) = overlap("queue");
    assert!(matches!(
        tick.dispatch[..],
        [Dispatch::Job {
            serialize: true,
            ..
        }]
    ));
    assert_eq!(fires, ["queued", "running"]);
    let (tick, fires) = overlap("allow");
    assert!(matches!(
        tick.dispatch[..],
        [Dispatch::Job {
            serialize: false,
            ..
        }]
    ));
    assert_eq!(fires, ["queued", "running"]);
}

#[test]
fn a_disabled_job_does_not_replay_its_disabled_time_when_enabled_again() {
    let s = Setup::new();
    s.job("0 * * * *", &[]);
    s.scheduler(t("2026-03-01T00:00:00Z"));
    let file = JobsFile::in_home(&s.dirs.home);
    let set = |on: bool| {
        file.update(|jobs| {
            jobs[0].enabled = on;
            Ok::<_, crate::triggers::cron::jobs::JobsError>(())
        })
        .expect("update");
    };
    set(false);
    s.scheduler(t("2026-03-01T05:30:00Z"));
    set(true);
    let mut c = s.scheduler(t("2026-03-01T05:30:10Z"));
    let tick = c.tick(t("2026-03-01T05:30:10Z")).expect("tick");
    assert!(tick.dispatch.is_empty(), "{tick:?}");
    assert_eq!(tick.missed, 0);
    assert_eq!(c.next_due(), Some(t("2026-03-01T06:00:00Z")));
}

#[test]
fn two_schedulers_racing_on_one_database_enqueue_each_fire_once() {
    let s = Setup::new();
    std::fs::write(
        s.dirs.root.join("workflows/minutely.yaml"),
        "name: minutely\nschedule: \"* * * * *\"\ntz: UTC\noverlap: allow\nsteps:\n  - name: a\n    command: \"true\"\n",
    )
    .expect("workflow");
    s.job("* * * * *", &[("overlap", "allow".into())]);
    let start = t("2026-03-01T00:00:00Z");
    let minutes = 120;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut sched = s.scheduler(start);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut got = (0usize, 0usize);
                for m in 1..=minutes {
                    let now = start + TimeDelta::minutes(m) + TimeDelta::milliseconds(5);
                    let tick = sched.tick(now).expect("tick");
                    for d in &tick.dispatch {
                        match d {
                            Dispatch::Job { .. } => got.0 += 1,
                            Dispatch::Run { .. } => got.1 += 1,
                        }
                    }
                }
                got
            })
        })
        .collect();
    let got: Vec<(usize, usize)> = threads
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let minutes = usize::try_from(minutes).expect("count");
    // Between them, each fire was dispatched exactly once.
    assert_eq!(got[0].0 + got[1].0, minutes, "{got:?}");
    assert_eq!(got[0].1 + got[1].1, minutes, "{got:?}");
    let engine = s.engine();
    let fires = engine.store.list_fires(None, 10_000).expect("fires");
    assert_eq!(fires.len(), 2 * minutes);
    let runs = engine
        .store
        .list_runs(&crate::store::RunFilter::default())
        .expect("runs");
    assert_eq!(runs.len(), minutes);
    let mut instants: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.trigger["scheduled_for"].as_str())
        .collect();
    instants.sort_unstable();
    instants.dedup();
    assert_eq!(instants.len(), minutes);
}

#[test]
fn pruning_fires_keeps_each_schedules_newest_and_the_unfinished() {
    let s = Setup::new();
    s.job("* * * * *", &[("overlap", "allow".into())]);
    let mut a = s.scheduler(t("2026-03-01T00:00:00Z"));
    for m in 1..=5 {
        a.tick(t("2026-03-01T00:00:00.100Z") + TimeDelta::minutes(m))
            .expect("tick");
    }
    let store = s.engine().store.clone();
    let fires = store.list_fires(None, 100).expect("fires");
    assert_eq!(fires.len(), 5);
    for f in &fires[1..4] {
        store
            .set_fire_status(&f.schedule, f.scheduled_for, "ok", None, 0)
            .expect("ok");
    }
    // Everything was enqueued "before" this instant: finished ones go, except the newest.
    let pruned = store.prune_fires(i64::MAX).expect("prune");
    assert_eq!(pruned, 3);
    let left: Vec<String> = store
        .list_fires(None, 100)
        .expect("fires")
        .into_iter()
        .map(|f| f.status)
        .collect();
    // The newest (still queued) and the oldest (still queued: never started).
    assert_eq!(left, ["queued", "queued"]);
}
