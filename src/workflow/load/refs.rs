//! Every name an expression reads is checked against what the workflow declares: `params.x`
//! against `params:`, `steps.x` against the steps (and, from a step, against the steps it needs,
//! directly or through others, since only their results exist when it runs), the fields of a
//! step, of `run` and of `trigger`, and the context's top-level names. The caret points at the
//! name in the file, not at the start of the string.

use std::collections::{HashMap, HashSet};

use super::Cx;
use crate::diagnostic::{Pos, did_you_mean};
use crate::expr::{self, Reference};
use crate::workflow::Step;
use crate::yaml::{Node, Value};

/// The top-level names of the expression context (see `engine::run::prepare`).
const ROOTS: &[&str] = &[
    "params", "env", "steps", "run", "trigger", "secrets", "memory",
];
/// The fields of `steps.<name>`.
const STEP_FIELDS: &[&str] = &["status", "exit_code", "stdout", "outputs", "attempts"];
/// The fields of `run`.
const RUN_FIELDS: &[&str] = &["id", "workflow", "created_at", "started_at", "dry_run"];
/// Every field some trigger sets: manual (`user`), rerun (`of`, `from`), cron (`job`,
/// `job_name`, `scheduled_for`), watcher (`rule`, `path`, `event`, `from`), webhook (`hook`,
/// `body`, `headers`, `delivery`), sub-workflow (`parent_run`, `step`, `attempt`), chat
/// (`chat`, `from`, `command`, `args`; a `triggers.yaml` match: `text`, `match`).
pub const TRIGGER_FIELDS: &[&str] = &[
    "type",
    "user",
    "of",
    "from",
    "job",
    "job_name",
    "scheduled_for",
    "rule",
    "path",
    "event",
    "hook",
    "body",
    "headers",
    "delivery",
    "parent_run",
    "step",
    "attempt",
    "chat",
    "command",
    "args",
    "text",
    "match",
];

/// Where an expression is evaluated.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope {
    /// In step `index` (its own fields): only the steps it needs exist.
    Step { index: usize },
    /// In step `index`'s `rollback:` (after it succeeded): also its own result.
    Compensation { index: usize },
    /// After the main steps (workflow `outputs:`, `rollback:` steps), or before any (`env:`):
    /// every step is known; whether it ran is for `| default` to handle.
    Anywhere,
}

/// What the references are checked against.
pub(super) struct Declared<'a> {
    pub(super) params: HashSet<&'a str>,
    pub(super) steps: HashMap<&'a str, usize>,
    pub(super) needs: HashMap<usize, &'a [usize]>,
    pub(super) source: &'a str,
    /// Byte offset of each line's start in `source` (positions are found per reference).
    line_starts: Vec<usize>,
    /// For [`Declared::is_ancestor`] (built on first use): each step's position in dependency
    /// order, and for each target asked about, the steps known to need it.
    #[allow(clippy::type_complexity)]
    reach: std::cell::RefCell<Option<(HashMap<usize, usize>, HashMap<usize, HashSet<usize>>)>>,
}

impl<'a> Declared<'a> {
    pub(super) fn new(
        params: &'a [crate::params::ParamSpec],
        steps: &'a [Step],
        source: &'a str,
    ) -> Self {
        Self {
            params: params.iter().map(|p| p.name.as_str()).collect(),
            steps: steps.iter().map(|s| (s.name.as_str(), s.index)).collect(),
            needs: steps
                .iter()
                .map(|s| (s.index, s.needs.as_slice()))
                .collect(),
            source,
            line_starts: std::iter::once(0)
                .chain(source.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            reach: std::cell::RefCell::default(),
        }
    }

    /// Whether `target` is among the steps `from` needs, directly or through others. Linear in
    /// the workflow's size for the usual shapes (every step reading one early step, each
    /// reading a recent one): the walk skips steps that come before `target` in dependency
    /// order, and stops at a step already known to need `target`.
    fn is_ancestor(&self, from: usize, target: usize) -> bool {
        if self.needs.get(&from).is_some_and(|n| n.contains(&target)) {
            return true;
        }
        let mut memo = self.reach.borrow_mut();
        let (order, known) = memo.get_or_insert_with(|| (self.dependency_order(), HashMap::new()));
        let floor = order.get(&target).copied();
        let known = known.entry(target).or_default();
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(i) = stack.pop() {
            for &n in self.needs.get(&i).into_iter().flat_map(|n| n.iter()) {
                if n == target || known.contains(&n) {
                    known.insert(from);
                    return true;
                }
                // A step before `target` in dependency order cannot need it.
                let below = matches!((floor, order.get(&n)), (Some(f), Some(&o)) if o < f);
                if !below && seen.insert(n) {
                    stack.push(n);
                }
            }
        }
        false
    }

    /// Each step's position in an order where every step comes after those it needs (steps in
    /// a cycle, which validation reports, have none).
    fn dependency_order(&self) -> HashMap<usize, usize> {
        let mut by: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut waiting: HashMap<usize, usize> = HashMap::new();
        for (&step, needs) in &self.needs {
            waiting.insert(step, needs.len());
            for &n in needs.iter() {
                by.entry(n).or_default().push(step);
            }
        }
        let mut ready: Vec<usize> = waiting
            .iter()
            .filter(|(_, w)| **w == 0)
            .map(|(s, _)| *s)
            .collect();
        let mut order = HashMap::new();
        while let Some(s) = ready.pop() {
            order.insert(s, order.len());
            for &later in by.get(&s).into_iter().flatten() {
                if let Some(w) = waiting.get_mut(&later) {
                    *w = w.saturating_sub(1);
                    if *w == 0 {
                        ready.push(later);
                    }
                }
            }
        }
        order
    }

    fn step_name(&self, index: usize) -> &str {
        self.steps
            .iter()
            .find(|(_, i)| **i == index)
            .map_or("?", |(n, _)| n)
    }
}

impl Cx<'_> {
    /// Checks every expression in the strings under `node` (a step, `outputs:`, …); an `if:`
    /// under it may be an expression without `${{ }}`.
    pub(super) fn check_refs(&mut self, node: &Node, scope: Scope, d: &Declared<'_>) {
        match &node.value {
            Value::Str(s) if expr::has_expressions(s) => {
                let Ok(segments) = expr::parse_template(s) else {
                    return; // reported by the syntax check
                };
                let mut nth = 0;
                for seg in segments {
                    if let expr::Segment::Expr(e) = seg {
                        if self.eval.check(&e.source).is_err() {
                            nth += 1;
                            continue; // reported by the syntax check
                        }
                        let lead = s[e.start + 3..].len() - s[e.start + 3..].trim_start().len();
                        for r in expr::references(&e.source) {
                            let pos = locate(d, node.pos, nth, lead + r.offset, &r.root);
                            self.check_ref(&r, pos, scope, d);
                        }
                        nth += 1;
                    }
                }
            }
            Value::Seq(items) => items.iter().for_each(|n| self.check_refs(n, scope, d)),
            Value::Map(entries) => {
                for (k, v) in entries {
                    match (k.as_str(), scope) {
                        (Some("if"), _) => self.check_bare(v, scope, d),
                        (Some("rollback"), Scope::Step { index }) => {
                            self.check_refs(v, Scope::Compensation { index }, d);
                        }
                        _ => self.check_refs(v, scope, d),
                    }
                }
            }
            _ => {}
        }
    }

    /// An `if:` value: an expression, with or without `${{ }}`.
    fn check_bare(&mut self, node: &Node, scope: Scope, d: &Declared<'_>) {
        match &node.value {
            Value::Str(s) if !expr::has_expressions(s) => {
                if self.eval.check(s).is_err() {
                    return;
                }
                let lead = s.len() - s.trim_start().len();
                for r in expr::references(s) {
                    let pos = locate_bare(d, node.pos, lead + r.offset, &r.root);
                    self.check_ref(&r, pos, scope, d);
                }
            }
            _ => self.check_refs(node, scope, d),
        }
    }

    fn check_ref(&mut self, r: &Reference, pos: Pos, scope: Scope, d: &Declared<'_>) {
        let first = r.path.first().map(String::as_str);
        match r.root.as_str() {
            "params" => {
                let Some(name) = first else { return };
                if d.params.contains(name) {
                    return;
                }
                let declared: Vec<&str> = {
                    let mut v: Vec<&str> = d.params.iter().copied().collect();
                    v.sort_unstable();
                    v
                };
                let takes = if declared.is_empty() {
                    "the workflow declares no params".to_owned()
                } else {
                    format!("it declares: {}", declared.join(", "))
                };
                self.err_help(
                    pos,
                    format!("`params.{name}` is not a param of this workflow ({takes})"),
                    did_you_mean(name, declared.iter().copied()),
                );
            }
            "steps" => {
                let Some(name) = first else { return };
                let Some(&target) = d.steps.get(name) else {
                    self.err_help(
                        pos,
                        format!("expression refers to an unknown step `{name}`"),
                        did_you_mean(name, d.steps.keys().copied()),
                    );
                    return;
                };
                if let Some(field) = r.path.get(1)
                    && !STEP_FIELDS.contains(&field.as_str())
                {
                    self.err_help(
                        pos,
                        format!(
                            "`steps.{name}.{field}`: a step has no field `{field}` (it has {})",
                            STEP_FIELDS.join(", ")
                        ),
                        did_you_mean(field, STEP_FIELDS.iter().copied()),
                    );
                    return;
                }
                match scope {
                    Scope::Step { index } if index == target => self.err(
                        pos,
                        format!(
                            "step `{name}` reads its own result, which does not exist while it runs (its `rollback:` may read it)"
                        ),
                    ),
                    Scope::Step { index } | Scope::Compensation { index }
                        if index != target && !d.is_ancestor(index, target) =>
                    {
                        let me = d.step_name(index).to_owned();
                        self.err_help(
                            pos,
                            format!(
                                "step `{me}` reads `steps.{name}`, but `{name}` is not among the steps it needs, so it may not have run yet"
                            ),
                            Some(format!("add `{name}` to the `needs:` of `{me}`")),
                        );
                    }
                    _ => {}
                }
            }
            "run" => self.check_field(r, pos, "run", RUN_FIELDS),
            "trigger" => self.check_field(r, pos, "trigger", TRIGGER_FIELDS),
            "env" | "secrets" | "memory" => {}
            other => {
                self.err_help(
                    pos,
                    format!(
                        "unknown name `{other}` in an expression (expressions read {})",
                        ROOTS.join(", ")
                    ),
                    did_you_mean(other, ROOTS.iter().copied()),
                );
            }
        }
    }

    fn check_field(&mut self, r: &Reference, pos: Pos, root: &str, fields: &[&str]) {
        let Some(field) = r.path.first() else { return };
        if fields.contains(&field.as_str()) {
            return;
        }
        self.err_help(
            pos,
            format!(
                "`{root}.{field}`: `{root}` has no field `{field}` (it has {})",
                fields.join(", ")
            ),
            did_you_mean(field, fields.iter().copied()),
        );
    }
}

/// The byte offset of a line and (character) column in `d`'s source.
fn offset_of(d: &Declared<'_>, pos: Pos) -> Option<usize> {
    let line_start = *d.line_starts.get(pos.line.max(1) - 1)?;
    let line = &d.source[line_start..];
    let col = line
        .char_indices()
        .nth(pos.col.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i);
    Some(line_start + col)
}

/// The position of byte `offset` of `d`'s source.
fn pos_of(d: &Declared<'_>, offset: usize) -> Pos {
    let offset = offset.min(d.source.len());
    // The last line starting at or before `offset`.
    let line = d
        .line_starts
        .partition_point(|&start| start <= offset)
        .max(1);
    let line_start = d.line_starts[line - 1];
    Pos {
        line,
        col: d.source[line_start..offset].chars().count() + 1,
    }
}

/// Where the name `root` at byte `inner` of the `nth` expression of the scalar at `at` stands
/// in the file; the scalar's own position when the text there is not as written (an escaped
/// quoted string).
fn locate(d: &Declared<'_>, at: Pos, nth: usize, inner: usize, root: &str) -> Pos {
    let source = d.source;
    let Some(start) = offset_of(d, at) else {
        return at;
    };
    let Some((open, _)) = source[start..].match_indices("${{").nth(nth) else {
        return at;
    };
    let name = start + open + 3 + inner;
    if source.get(name..).is_some_and(|s| s.starts_with(root)) {
        pos_of(d, name)
    } else {
        pos_of(d, start + open)
    }
}

/// Like [`locate`] for an expression without `${{ }}` (a bare `if:`), quoted or not.
fn locate_bare(d: &Declared<'_>, at: Pos, inner: usize, root: &str) -> Pos {
    let source = d.source;
    let Some(start) = offset_of(d, at) else {
        return at;
    };
    for skip in [0, 1] {
        let name = start + skip + inner;
        if source.get(name..).is_some_and(|s| s.starts_with(root)) {
            return pos_of(d, name);
        }
    }
    at
}
