//! The workflow-level schedule keys: `schedule:` (a string, or a list of strings and of objects
//! `{cron, tz, catch_up, ...}`) and the policy keys beside it (`tz`, `catch_up`,
//! `catch_up_window`, `max_catch_up`, `overlap`, `jitter`), which an object item overrides for
//! its own schedule. Every problem is reported with its position.

use std::time::Duration;

use crate::diagnostic::Pos;
use crate::scheduler::{CatchUp, Overlap, Policy, Schedule, ScheduleSpec};
use crate::yaml::{Node, Reader, Value};

/// The workflow keys this module reads.
pub const KEYS: &[&str] = &[
    "schedule",
    "tz",
    "catch_up",
    "catch_up_window",
    "max_catch_up",
    "overlap",
    "jitter",
];

/// Keys of an object item of `schedule:`.
const ITEM_KEYS: &[&str] = &[
    "cron",
    "tz",
    "catch_up",
    "catch_up_window",
    "max_catch_up",
    "overlap",
    "jitter",
];

/// The options as written at one level (workflow or item); `None` = not given there.
#[derive(Debug, Clone, Default)]
struct Options {
    tz: Option<String>,
    catch_up: Option<CatchUp>,
    window: Option<Duration>,
    max: Option<u32>,
    overlap: Option<Overlap>,
    jitter: Option<Duration>,
}

impl Options {
    fn over(&self, base: &Options) -> Options {
        Options {
            tz: self.tz.clone().or_else(|| base.tz.clone()),
            catch_up: self.catch_up.or(base.catch_up),
            window: self.window.or(base.window),
            max: self.max.or(base.max),
            overlap: self.overlap.or(base.overlap),
            jitter: self.jitter.or(base.jitter),
        }
    }

    fn policy(&self) -> Policy {
        let d = Policy::default();
        Policy {
            catch_up: self.catch_up.unwrap_or(d.catch_up),
            catch_up_window: self.window.unwrap_or(d.catch_up_window),
            max_catch_up: self.max.unwrap_or(d.max_catch_up),
            overlap: self.overlap.unwrap_or(d.overlap),
            jitter: self.jitter,
            grace: d.grace,
        }
    }

    /// Reads one option key (one of [`ITEM_KEYS`] but `cron`).
    fn read(&mut self, key: &str, node: &Node, r: &mut Reader) {
        match key {
            "tz" => {
                if let Some(s) = r.string(node, "tz") {
                    match crate::scheduler::parse_tz(&s) {
                        Ok(_) => self.tz = Some(s.trim().to_owned()),
                        Err(e) => r.err(node.pos, e),
                    }
                }
            }
            "catch_up" => {
                self.catch_up = r
                    .choice(node, "catch_up", &CatchUp::NAMES)
                    .and_then(|s| CatchUp::parse(&s));
            }
            "overlap" => {
                self.overlap = r
                    .choice(node, "overlap", &Overlap::NAMES)
                    .and_then(|s| Overlap::parse(&s));
            }
            "catch_up_window" => self.window = r.duration_or_zero(node, "catch_up_window"),
            "jitter" => self.jitter = r.duration_or_zero(node, "jitter"),
            "max_catch_up" => {
                self.max = r
                    .whole_number(node, "max_catch_up", 0..=10_000)
                    .and_then(|n| u32::try_from(n).ok());
            }
            _ => {}
        }
    }
}

/// Reads the schedule keys of a workflow. `entries` are the workflow's top-level entries whose
/// key is in [`KEYS`], with the position of the key. Problems go to `r`.
pub fn read(r: &mut Reader, entries: &[(&str, Pos, &Node)]) -> Vec<ScheduleSpec> {
    let mut base = Options::default();
    let mut schedule = None;
    for (key, _, node) in entries {
        if *key == "schedule" {
            schedule = Some(*node);
        } else {
            base.read(key, node, r);
        }
    }
    let Some(node) = schedule else {
        if let Some((key, pos, _)) = entries.first() {
            r.err(
                *pos,
                format!("`{key}` applies to schedules, but the workflow has no `schedule:`"),
            );
        }
        return Vec::new();
    };
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => {
            if items.is_empty() {
                r.err(
                    node.pos,
                    "`schedule` is an empty list (give at least one schedule, or remove the key)",
                );
            }
            items.iter().collect()
        }
        Value::Null => {
            r.err(
                node.pos,
                "`schedule` is empty (expected e.g. `0 9 * * MON-FRI`, `every 5m` or a list)",
            );
            Vec::new()
        }
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        let (expr, pos, opts) = match &item.value {
            Value::Str(s) => (s.clone(), item.pos, base.clone()),
            Value::Map(_) => {
                let mut own = Options::default();
                let mut expr = None;
                for (key, v) in r.entries(item, ITEM_KEYS, "a schedule") {
                    if key == "cron" {
                        expr = r.string(v, "cron").map(|s| (s, v.pos));
                    } else {
                        own.read(key, v, r);
                    }
                }
                let Some((expr, pos)) = expr else {
                    r.err(
                        item.pos,
                        "a schedule object needs `cron:` (the expression, e.g. `cron: \"0 9 * * *\"` or `cron: every 5m`)",
                    );
                    continue;
                };
                (expr, pos, own.over(&base))
            }
            _ => {
                r.err(
                    item.pos,
                    format!(
                        "a schedule must be a string or a mapping with `cron:`, found {}",
                        item.kind()
                    ),
                );
                continue;
            }
        };
        match Schedule::parse(&expr, opts.tz.as_deref()) {
            Ok(schedule) => out.push(ScheduleSpec {
                expr: expr.trim().to_owned(),
                tz: opts.tz.clone(),
                schedule,
                policy: opts.policy(),
                pos,
            }),
            Err(e) => r.err(pos, format!("invalid schedule: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::scheduler::{CatchUp, Overlap};
    use crate::workflow::load::load_str;
    use std::path::Path;
    use std::time::Duration;

    fn load(yaml: &str) -> Result<crate::workflow::Workflow, String> {
        load_str(Path::new("wf.yaml"), yaml.to_owned()).map_err(|e| {
            e.diagnostics
                .iter()
                .map(crate::diagnostic::Diagnostic::headline)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn string_list_and_object_items_with_inherited_policy() {
        let wf = load(concat!(
            "schedule:\n",
            "  - \"0 2 * * *\"\n",
            "  - {cron: every 5m, catch_up: all, jitter: 30s}\n",
            "tz: Europe/Berlin\ncatch_up: none\noverlap: queue\nmax_catch_up: 3\ncatch_up_window: 2h\n",
            "steps:\n  - {name: a, command: 'true'}\n",
        ))
        .unwrap();
        assert_eq!(wf.schedules.len(), 2);
        let (a, b) = (&wf.schedules[0], &wf.schedules[1]);
        assert_eq!(a.expr, "0 2 * * *");
        assert_eq!(a.tz.as_deref(), Some("Europe/Berlin"));
        assert_eq!(a.policy.catch_up, CatchUp::None);
        assert_eq!(a.policy.overlap, Overlap::Queue);
        assert_eq!(a.policy.max_catch_up, 3);
        assert_eq!(a.policy.catch_up_window, Duration::from_secs(7200));
        assert_eq!(b.policy.catch_up, CatchUp::All);
        assert_eq!(b.policy.jitter, Some(Duration::from_secs(30)));
        assert_eq!(b.tz.as_deref(), Some("Europe/Berlin"));
        assert_eq!(a.pos.line, 2);
        assert_eq!(
            wf.schedules[0].id("nightly"),
            "workflow:nightly:0 2 * * *@Europe/Berlin"
        );
    }

    #[test]
    fn single_string_and_defaults() {
        let wf = load("schedule: '@hourly'\nsteps:\n  - {name: a, command: 'true'}\n").unwrap();
        assert_eq!(wf.schedules.len(), 1);
        assert_eq!(wf.schedules[0].policy, crate::scheduler::Policy::default());
        let none = load("steps:\n  - {name: a, command: 'true'}\n").unwrap();
        assert!(none.schedules.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let e = load(
            "schedule:\n  - \"61 * * * *\"\n  - {cron: '@daily', catchup: all}\n  - {tz: UTC}\ncatch_up: sometimes\ntz: Mars/Olympus\njitter: soon\nmax_catch_up: -1\nsteps:\n  - {name: a, command: 'true'}\n",
        )
        .unwrap_err();
        for want in [
            "wf.yaml:2:5: invalid schedule: minute field `61` out of range 0-59",
            "wf.yaml:3:22: unknown key `catchup` in a schedule",
            "wf.yaml:4:5: a schedule object needs `cron:`",
            "wf.yaml:5:11: unknown `catch_up` value `sometimes` (expected none, last, all)",
            "wf.yaml:6:5: unknown time zone `Mars/Olympus`",
            "wf.yaml:7:9: invalid duration for `jitter`",
            "wf.yaml:8:15: `max_catch_up` must be a whole number from 0 to 10000",
        ] {
            assert!(e.contains(want), "missing `{want}` in:\n{e}");
        }
    }

    #[test]
    fn policy_keys_without_schedule_are_refused() {
        let e = load("overlap: allow\nsteps:\n  - {name: a, command: 'true'}\n").unwrap_err();
        assert!(
            e.contains(
                "wf.yaml:1:10: `overlap` applies to schedules, but the workflow has no `schedule:`"
            ),
            "{e}"
        );
    }
}
