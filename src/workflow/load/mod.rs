//! Loading `workflows/*.yaml`: the spanned YAML tree is checked key by key and turned into the
//! resolved [`Workflow`]. Every problem in the file is collected, each with its line and column,
//! before anything is returned; a file with any problem yields no workflow at all.

mod refs;
pub mod schedule;
mod triggers;

pub use refs::TRIGGER_FIELDS;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Pos, did_you_mean};
use crate::expr::Evaluator;
use crate::params::ParamSpec;
use crate::steps::{self, shell::ShellStep};
use crate::workflow::{
    Concurrency, Condition, DEFAULT_STEP_TIMEOUT, NotifyOn, OnBusy, OnFailure, RetryPolicy, Step,
    StepKind, Workflow,
};
use crate::yaml::{self, Node, Reader, Value};

/// Workflow files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

pub use crate::diagnostic::FileErrors;

const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "params",
    "env",
    "concurrency",
    "timeout",
    "max_parallel",
    "notify_profile",
    "notify",
    "outputs",
    "steps",
    "rollback",
    // Schedules (schedule.rs).
    "schedule",
    "tz",
    "catch_up",
    "catch_up_window",
    "max_catch_up",
    "overlap",
    "jitter",
    "triggers",
    // Scale-out: the labels a `claw worker` must have to run it (docs/scale-out.md).
    "runs_on",
];

/// Reads and loads a workflow file.
pub fn load_file(path: &Path) -> Result<Workflow, FileErrors> {
    let src = yaml::read_file(path, MAX_FILE_BYTES, "workflow file")?;
    load_source(path, src)
}

/// Loads a workflow from text; `path` names it in diagnostics and gives the default name.
pub fn load_str(path: &Path, source: String) -> Result<Workflow, FileErrors> {
    load_source(path, yaml::parse(path, source)?)
}

fn load_source(path: &Path, src: yaml::Source) -> Result<Workflow, FileErrors> {
    let yaml::Source { text: source, root } = src;
    let evaluator = Evaluator::new();
    let mut cx = Cx {
        r: Reader::new(),
        eval: &evaluator,
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let workflow = cx.workflow(&root, path, &stem, &source);
    if cx.diags.is_empty()
        && let Some(workflow) = workflow
    {
        return Ok(workflow);
    }
    let mut diagnostics: Vec<Diagnostic> =
        cx.r.diags.into_iter().map(|d| d.in_file(path)).collect();
    diagnostics.sort_by_key(|d| d.pos);
    diagnostics.dedup();
    Err(FileErrors {
        path: path.to_path_buf(),
        source: Some(source),
        diagnostics,
    })
}

struct Cx<'a> {
    r: Reader,
    eval: &'a Evaluator,
}

impl std::ops::Deref for Cx<'_> {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        &self.r
    }
}

impl std::ops::DerefMut for Cx<'_> {
    fn deref_mut(&mut self) -> &mut Reader {
        &mut self.r
    }
}

/// A step as read, before dependencies are resolved.
struct RawStep<'n> {
    step: Step,
    node: &'n Node,
    needs: Option<Vec<(String, Pos)>>,
}

impl Cx<'_> {
    /// A mapping of names to scalar strings (`env:`).
    fn string_map(&mut self, node: &Node, field: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in self.entries(node, &[], &format!("`{field}`")) {
            if let Some(s) = self.string(v, &format!("{field}.{k}")) {
                self.template(v, &s);
                out.push((k.to_owned(), s));
            }
        }
        out
    }

    /// Checks the `${{ }}` expressions in a string value.
    fn template(&mut self, node: &Node, text: &str) {
        for e in self.eval.check_template(text) {
            self.err(node.pos, format!("invalid expression: {e}"));
        }
    }

    /// Checks every string under a node for expressions.
    fn templates_in(&mut self, node: &Node) {
        match &node.value {
            Value::Str(s) => self.template(node, s),
            Value::Seq(items) => items.iter().for_each(|n| self.templates_in(n)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| self.templates_in(v)),
            _ => {}
        }
    }

    fn workflow(&mut self, root: &Node, path: &Path, stem: &str, source: &str) -> Option<Workflow> {
        if root.value == Value::Null {
            self.err(
                Pos { line: 1, col: 1 },
                "the file is empty: a workflow needs `steps:`",
            );
            return None;
        }
        let entries = self.entries(root, WORKFLOW_KEYS, "the workflow");
        let mut wf = Workflow {
            name: stem.to_owned(),
            description: String::new(),
            path: path.to_path_buf(),
            source: source.to_owned(),
            params: Vec::new(),
            env: Vec::new(),
            concurrency: None,
            timeout: None,
            max_parallel: std::thread::available_parallelism().map_or(2, usize::from),
            notify_profile: None,
            notify: Vec::new(),
            outputs: Vec::new(),
            steps: Vec::new(),
            rollback: Vec::new(),
            schedules: Vec::new(),
            triggers: Vec::new(),
            runs_on: Vec::new(),
        };
        let mut schedule_entries = Vec::new();
        let mut steps_node = None;
        let mut rollback_node = None;
        // Nodes whose expressions are checked against the steps once they are known.
        let mut anywhere: Vec<&Node> = Vec::new();
        for (key, value) in entries {
            match key {
                "name" => {
                    if let Some(name) = self.string(value, "name") {
                        if name.trim().is_empty() || name.contains(['/', '\n', '\0']) {
                            self.err(
                                value.pos,
                                "`name` must be a non-empty name without `/` or line breaks",
                            );
                        } else {
                            match crate::names::normalize(&name) {
                                Ok(n) => wf.name = n,
                                Err(why) => self.err(value.pos, format!("`name` {why}")),
                            }
                        }
                    }
                }
                "description" if value.value != Value::Null => {
                    wf.description = self.string(value, "description").unwrap_or_default();
                }
                "params" => wf.params = self.params(value),
                "env" => {
                    wf.env = self.string_map(value, "env");
                    anywhere.push(value);
                }
                "concurrency" => wf.concurrency = self.concurrency(value),
                "runs_on" => {
                    wf.runs_on = self
                        .string_list(value, "runs_on")
                        .into_iter()
                        .map(|(l, _)| l)
                        .collect();
                }
                "timeout" => wf.timeout = self.duration(value, "timeout"),
                "max_parallel" => {
                    if let Some(n) = self.positive_int(value, "max_parallel") {
                        wf.max_parallel = n as usize;
                    }
                }
                "notify_profile" => {
                    wf.notify_profile = self
                        .string(value, "notify_profile")
                        .filter(|s| !s.is_empty());
                }
                "notify" => wf.notify = self.notify(value),
                "outputs" => {
                    anywhere.push(value);
                    for (k, v) in self.entries(value, &[], "`outputs`") {
                        if let Some(s) = self.string(v, &format!("outputs.{k}")) {
                            self.template(v, &s);
                            wf.outputs.push((k.to_owned(), s));
                        }
                    }
                }
                "steps" => steps_node = Some(value),
                "rollback" => rollback_node = Some(value),
                k if schedule::KEYS.contains(&k) => {
                    schedule_entries.push((k, value.pos, value));
                }
                "triggers" => wf.triggers = self.triggers(value),
                _ => {}
            }
        }
        if !schedule_entries.is_empty() {
            wf.schedules = schedule::read(&mut self.r, &schedule_entries);
        }
        let Some(steps_node) = steps_node else {
            self.err(root.pos, "the workflow has no `steps:`");
            return None;
        };
        let raw = self.step_list(steps_node, "steps", false);
        if matches!(&steps_node.value, Value::Seq(items) if items.is_empty()) {
            self.err(
                steps_node.pos,
                "`steps` is empty: a workflow needs at least one step",
            );
        }
        let step_nodes: Vec<(usize, &Node)> = raw.iter().map(|r| (r.step.index, r.node)).collect();
        wf.steps = self.resolve_needs(raw);
        let declared = refs::Declared::new(&wf.params, &wf.steps, source);
        for (index, node) in step_nodes {
            self.check_refs(node, refs::Scope::Step { index }, &declared);
        }
        for node in anywhere {
            self.check_refs(node, refs::Scope::Anywhere, &declared);
        }
        if let Some(rb) = rollback_node {
            self.check_refs(rb, refs::Scope::Anywhere, &declared);
            let raw = self.step_list(rb, "rollback", true);
            wf.rollback = raw.into_iter().map(|r| r.step).collect();
        }
        Some(wf)
    }

    fn params(&mut self, node: &Node) -> Vec<ParamSpec> {
        crate::params::load(&mut self.r, node, "params", "param")
    }

    /// `notify:` in DESIGN.md's form (`on_failure: [profile…]`, `on_success`, `on_wait`) or the
    /// short one (`on: [failure, success, waiting]` with `profile:` or `to:`; `on` defaults to
    /// `[failure]`). A recipient is a profile or `channel:target`.
    fn notify(&mut self, node: &Node) -> Vec<(NotifyOn, String)> {
        let mut out = Vec::new();
        let mut on = Vec::new();
        let mut to = Vec::new();
        let keys = ["on_failure", "on_success", "on_wait", "on", "profile", "to"];
        for (k, v) in self.entries(node, &keys, "`notify`") {
            match k {
                "on_failure" | "on_success" | "on_wait" => {
                    let event = match k {
                        "on_failure" => NotifyOn::Failure,
                        "on_success" => NotifyOn::Success,
                        _ => NotifyOn::Waiting,
                    };
                    for (s, _) in self.string_list(v, k) {
                        out.push((event, s));
                    }
                }
                "on" => {
                    for (s, pos) in self.string_list(v, "notify.on") {
                        match NotifyOn::parse(&s) {
                            Some(e) => on.push(e),
                            None => self.err_help(
                                pos,
                                format!("unknown event `{s}` in `notify.on` (expected one of: failure, success, waiting)"),
                                did_you_mean(&s, NotifyOn::NAMES.iter().copied()),
                            ),
                        }
                    }
                }
                _ => to.extend(self.string_list(v, k).into_iter().map(|(s, _)| s)),
            }
        }
        if to.is_empty() {
            if node.get("on").is_some() {
                self.err(
                    node.pos,
                    "`notify.on` needs `profile:` or `to:` beside it (who is told)",
                );
            }
        } else {
            if on.is_empty() && node.get("on").is_none() {
                on.push(NotifyOn::Failure);
            }
            for e in on {
                out.extend(to.iter().map(|t| (e, t.clone())));
            }
        }
        out
    }

    fn concurrency(&mut self, node: &Node) -> Option<Concurrency> {
        if let Value::Int(_) = node.value {
            return self
                .positive_int(node, "concurrency")
                .map(|limit| Concurrency {
                    limit,
                    on_busy: OnBusy::Queue,
                });
        }
        let mut c = Concurrency {
            limit: 1,
            on_busy: OnBusy::Queue,
        };
        for (k, v) in self.entries(node, &["limit", "on_busy"], "`concurrency`") {
            match k {
                "limit" => c.limit = self.positive_int(v, "concurrency.limit")?,
                "on_busy" => {
                    let s = self.string(v, "on_busy")?;
                    c.on_busy = match s.as_str() {
                        "queue" => OnBusy::Queue,
                        "skip" => OnBusy::Skip,
                        "cancel_running" => OnBusy::CancelRunning,
                        other => {
                            self.err_help(
                                v.pos,
                                format!("unknown `on_busy` value `{other}` (expected queue, skip or cancel_running)"),
                                did_you_mean(other, ["queue", "skip", "cancel_running"]),
                            );
                            return None;
                        }
                    };
                }
                _ => {}
            }
        }
        Some(c)
    }

    fn step_list<'n>(&mut self, node: &'n Node, list: &str, is_rollback: bool) -> Vec<RawStep<'n>> {
        let Value::Seq(items) = &node.value else {
            if node.value != Value::Null {
                self.err(
                    node.pos,
                    format!("`{list}` must be a list of steps, found {}", node.kind()),
                );
            }
            return Vec::new();
        };
        let mut out: Vec<RawStep<'n>> = Vec::new();
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let Some(raw) = self.step(item, index, list, is_rollback) else {
                continue;
            };
            if let Some(first) = seen.get(&raw.step.name) {
                self.err(
                    raw.step.pos,
                    format!(
                        "duplicate step name `{}` (first used at line {}): step names must be unique",
                        raw.step.name, first.line
                    ),
                );
                continue;
            }
            seen.insert(raw.step.name.clone(), raw.step.pos);
            out.push(raw);
        }
        // Re-number so that indices match positions in the returned list.
        for (i, r) in out.iter_mut().enumerate() {
            r.step.index = i;
        }
        out
    }

    fn step<'n>(
        &mut self,
        node: &'n Node,
        index: usize,
        list: &str,
        is_rollback: bool,
    ) -> Option<RawStep<'n>> {
        let Value::Map(_) = node.value else {
            self.err(
                node.pos,
                format!(
                    "each entry of `{list}` must be a step (a mapping with `name`), found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let type_node = node.get("type");
        let type_name = match type_node {
            Some(t) => self.string(t, "type")?,
            None => "shell".to_owned(),
        };
        let Some(kind_keys) = steps::keys_of(&type_name) else {
            steps::unknown_type(&mut self.r, type_node.unwrap_or(node), &type_name);
            return None;
        };
        let mut allowed: Vec<&str> = steps::COMMON_KEYS.to_vec();
        allowed.extend_from_slice(kind_keys);
        let what = match node.get("name").and_then(Node::as_str) {
            Some(n) => format!("step `{n}`"),
            None => format!("step {} of `{list}`", index + 1),
        };
        let entries = self.entries(node, &allowed, &what);
        let mut name = None;
        let mut step = Step {
            name: String::new(),
            index,
            kind: StepKind::Unavailable(steps::unavailable::Unavailable::placeholder(&type_name)),
            needs: Vec::new(),
            condition: None,
            if_expr: None,
            on_failure: OnFailure::Abort,
            retry: RetryPolicy::NONE,
            timeout: DEFAULT_STEP_TIMEOUT,
            env: Vec::new(),
            args: Vec::new(),
            idempotent: false,
            compensation: None,
            pos: node.pos,
        };
        let mut own_timeout = None;
        let mut needs = None;
        let mut idempotent = None;
        for (key, value) in entries {
            match key {
                "name" => {
                    if let Some(n) = self.string(value, "name") {
                        if n.trim().is_empty() || n.contains(['\n', '\0']) {
                            self.err(value.pos, "a step `name` must be non-empty and on one line");
                        } else {
                            match crate::names::normalize(&n) {
                                Ok(n) => name = Some(n),
                                Err(why) => self.err(value.pos, format!("the step `name` {why}")),
                            }
                        }
                    }
                }
                "type" | "description" => {}
                // Each kind says what the seed's `command` means for it; its expressions are
                // checked here (a shell command's also for safe quoting, by its kind).
                "command" => {
                    if let Some(c) = self.string(value, "command") {
                        self.template(value, &c);
                    }
                }
                "needs" => {
                    needs = Some(
                        self.r
                            .name_list(value, "needs", "a step name or a list of step names")
                            .into_iter()
                            .map(|(n, pos)| (crate::names::nfc(&n), pos))
                            .collect(),
                    );
                }
                "if" => {
                    if let Some(e) = self.string(value, "if") {
                        if let Err(err) = self.eval.check(strip_braces(&e)) {
                            self.err(value.pos, format!("invalid expression in `if`: {err}"));
                        }
                        step.if_expr = Some(e);
                    }
                }
                "condition" => {
                    let c = self.string(value, "condition").unwrap_or_default();
                    step.condition = match c.trim() {
                        "" => None,
                        "previous.ok" => Some(Condition::PreviousOk),
                        "previous.failed" => Some(Condition::PreviousFailed),
                        "always" => Some(Condition::Always),
                        other => {
                            self.err_help(
                                value.pos,
                                format!("unknown condition `{other}` (expected previous.ok, previous.failed or always; use `if:` for expressions)"),
                                did_you_mean(other, ["previous.ok", "previous.failed", "always"]),
                            );
                            None
                        }
                    };
                }
                "on_failure" => {
                    let s = self.string(value, "on_failure").unwrap_or_default();
                    step.on_failure = match s.as_str() {
                        "abort" => OnFailure::Abort,
                        "continue" => OnFailure::Continue,
                        "rollback" => OnFailure::Rollback,
                        other => {
                            self.err_help(
                                value.pos,
                                format!("unknown on_failure `{other}` (expected abort, continue or rollback)"),
                                did_you_mean(other, ["abort", "continue", "rollback"]),
                            );
                            OnFailure::Abort
                        }
                    };
                }
                "retry" => step.retry = self.retry(value).unwrap_or(RetryPolicy::NONE),
                "timeout" => {
                    if let Some(d) = self.duration(value, "timeout") {
                        step.timeout = d;
                        own_timeout = Some(d);
                    }
                }
                "env" => step.env = self.string_map(value, "env"),
                "args" => {
                    for (k, v) in self.entries(value, &[], "`args`") {
                        self.templates_in(v);
                        step.args.push((k.to_owned(), v.to_json()));
                    }
                }
                "idempotent" => idempotent = self.boolean(value, "idempotent"),
                "rollback" => {
                    if is_rollback {
                        self.err(value.pos, "a rollback step cannot have its own `rollback`");
                    } else {
                        step.compensation = self.compensation(value, &what).map(Box::new);
                    }
                }
                // The kind's own fields: their expressions are checked here, the rest by the
                // kind's loader.
                _ => self.templates_in(value),
            }
        }
        let Some(name) = name else {
            self.err(node.pos, format!("{what} has no `name`"));
            return None;
        };
        step.name = name;
        let mut cx = steps::LoadCx {
            r: &mut self.r,
            eval: self.eval,
            step: &step.name,
            type_name: &type_name,
            timeout: own_timeout,
        };
        // On a problem the step keeps its placeholder kind: the file fails anyway, and later
        // references to the step are not reported as unknown.
        if let Some(kind) = StepKind::load(&type_name, &mut cx, node) {
            step.kind = kind;
        }
        step.idempotent = idempotent.unwrap_or_else(|| step.kind.idempotent());
        Some(RawStep { step, node, needs })
    }

    fn compensation(&mut self, node: &Node, owner: &str) -> Option<Step> {
        if let Value::Str(cmd) = &node.value {
            self.template(node, cmd);
            return Some(Step {
                name: format!(
                    "{}-compensate",
                    owner.trim_start_matches("step ").trim_matches('`')
                ),
                index: 0,
                kind: StepKind::Shell(ShellStep::from_command(cmd.clone())),
                needs: Vec::new(),
                condition: None,
                if_expr: None,
                on_failure: OnFailure::Continue,
                retry: RetryPolicy::NONE,
                timeout: DEFAULT_STEP_TIMEOUT,
                env: Vec::new(),
                args: Vec::new(),
                idempotent: false,
                compensation: None,
                pos: node.pos,
            });
        }
        // A mapping without a name gets one from its owner.
        if let Value::Map(entries) = &node.value
            && node.get("name").is_none()
        {
            let mut named = entries.clone();
            let owner_name = owner
                .trim_start_matches("step ")
                .trim_matches('`')
                .to_owned();
            named.insert(
                0,
                (
                    Node {
                        value: Value::Str("name".into()),
                        pos: node.pos,
                    },
                    Node {
                        value: Value::Str(format!("{owner_name}-compensate")),
                        pos: node.pos,
                    },
                ),
            );
            let synthetic = Node {
                value: Value::Map(named),
                pos: node.pos,
            };
            return self.step(&synthetic, 0, "rollback", true).map(|r| r.step);
        }
        self.step(node, 0, "rollback", true).map(|r| r.step)
    }

    fn retry(&mut self, node: &Node) -> Option<RetryPolicy> {
        let mut p = RetryPolicy::NONE;
        if let Value::Int(_) = node.value {
            p.limit = self.positive_int(node, "retry")?;
            return Some(p);
        }
        for (k, v) in self.entries(node, &["limit", "delay", "backoff", "max_delay"], "`retry`") {
            match k {
                "limit" => p.limit = self.positive_int(v, "retry.limit")?,
                "delay" => p.delay = self.duration(v, "retry.delay")?,
                "max_delay" => p.max_delay = self.duration(v, "retry.max_delay")?,
                "backoff" => match v.value {
                    Value::Int(i) if i >= 1 => p.backoff = i as f64,
                    Value::Float(f) if (1.0..=100.0).contains(&f) => p.backoff = f,
                    _ => {
                        self.err(v.pos, "`retry.backoff` must be a number from 1 to 100");
                        return None;
                    }
                },
                _ => {}
            }
        }
        Some(p)
    }

    /// Turns `needs` names into indices (default: the step before), adds the implicit dependency of
    /// `condition: previous.*`, and rejects unknown names and cycles.
    fn resolve_needs(&mut self, raw: Vec<RawStep<'_>>) -> Vec<Step> {
        let names: Vec<String> = raw.iter().map(|r| r.step.name.clone()).collect();
        // By name, so that resolving costs the same per step however many there are.
        let by_name: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut steps = Vec::with_capacity(raw.len());
        for r in raw {
            let mut step = r.step;
            let _ = r.node;
            let mut deps = Vec::new();
            match r.needs {
                None => {
                    if step.index > 0 {
                        deps.push(step.index - 1);
                    }
                }
                Some(list) => {
                    for (name, pos) in list {
                        match by_name.get(name.as_str()).copied() {
                            Some(i) if i == step.index => {
                                self.err(pos, format!("step `{name}` cannot need itself"));
                            }
                            Some(i) => {
                                if !deps.contains(&i) {
                                    deps.push(i);
                                }
                            }
                            None => self.err_help(
                                pos,
                                format!("`needs` names an unknown step `{name}`"),
                                did_you_mean(&name, names.iter().map(String::as_str)),
                            ),
                        }
                    }
                    if matches!(
                        step.condition,
                        Some(Condition::PreviousOk | Condition::PreviousFailed)
                    ) && step.index > 0
                        && !deps.contains(&(step.index - 1))
                    {
                        deps.push(step.index - 1);
                    }
                }
            }
            step.needs = deps;
            steps.push(step);
        }
        if let Some(cycle) = find_cycle(&steps) {
            let path: Vec<&str> = cycle.iter().map(|&i| steps[i].name.as_str()).collect();
            let first = cycle[0];
            self.err(
                steps[first].pos,
                format!("dependency cycle: {} → {}", path.join(" → "), path[0]),
            );
        }
        steps
    }
}

/// `${{ expr }}` → `expr`; a bare expression is returned as is.
pub fn strip_braces(e: &str) -> &str {
    let t = e.trim();
    match t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("${{") => inner.trim(),
        _ => t,
    }
}

/// Names used as `steps.<name>` or `steps['<name>']` inside `${{ }}` expressions (or in a bare `if:`).
pub fn referenced_steps(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("steps") {
        let before_ok = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        let after = &rest[i + 5..];
        rest = after;
        if !before_ok {
            continue;
        }
        let name = if let Some(a) = after.strip_prefix('.') {
            let end = a
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(a.len());
            a[..end].trim_end_matches('-').to_owned()
        } else if let Some(a) = after
            .strip_prefix("[\"")
            .or_else(|| after.strip_prefix("['"))
        {
            match a.find(['"', '\'']) {
                Some(end) => a[..end].to_owned(),
                None => continue,
            }
        } else {
            continue;
        };
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A dependency cycle, as the list of steps on it, if there is one. Iterative (an explicit
/// stack), so a workflow with a very long chain of steps cannot overflow the call stack.
fn find_cycle(steps: &[Step]) -> Option<Vec<usize>> {
    // 0 = not visited, 1 = on the current path, 2 = done.
    let mut colour = vec![0u8; steps.len()];
    for root in 0..steps.len() {
        if colour[root] != 0 {
            continue;
        }
        // (node, index of the next dependency to look at)
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let deps = &steps[node].needs;
            if *next >= deps.len() {
                colour[node] = 2;
                path.pop();
                continue;
            }
            let d = deps[*next];
            *next += 1;
            if d >= steps.len() {
                continue;
            }
            match colour[d] {
                0 => {
                    colour[d] = 1;
                    path.push((d, 0));
                }
                1 => {
                    let start = path.iter().position(|&(n, _)| n == d).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[start..].iter().map(|&(n, _)| n).collect();
                    cycle.reverse();
                    return Some(cycle);
                }
                _ => {}
            }
        }
    }
    None
}
