//! Printing: progress on a terminal, tables, and the JSON shapes of `--json`.

use std::io::IsTerminal as _;

use crate::engine::{Event, Progress};
use crate::store::{RunRecord, StepRecord, StepStatus};
use crate::time;

/// Whether stderr is a terminal (progress and colour only then).
pub(crate) fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// A stored time (ms) in `--json` output: RFC 3339, or `null`.
pub(crate) fn rfc3339(ms: Option<i64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |ms| {
        time::rfc3339(&time::at(ms)).into()
    })
}

/// A stored time (ms) in a table: the local clock, or `-`.
pub(crate) fn local_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| time::local(time::at(ms)))
}

pub(crate) fn duration_ms(start: Option<i64>, end: Option<i64>) -> Option<i64> {
    Some(end?.saturating_sub(start?))
}

pub(crate) fn human_ms(ms: Option<i64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => {
            crate::time::duration::format(std::time::Duration::from_millis(ms.unsigned_abs()))
        }
    }
}

/// First line of a text, cut to `max` characters.
pub(crate) fn first_line(text: &str, max: usize) -> String {
    let line = text.trim().lines().next().unwrap_or_default();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

fn symbol(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
        StepStatus::Cancelled => "■",
        StepStatus::Interrupted | StepStatus::Waiting => "?",
        StepStatus::Pending | StepStatus::Running => "▸",
    }
}

/// Live progress on stderr when it is a terminal; silent otherwise.
#[derive(Debug)]
pub(crate) struct TermProgress {
    enabled: bool,
    asker: Option<Asker>,
}

impl TermProgress {
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            enabled: !quiet && stderr_is_tty(),
            asker: None,
        }
    }

    /// Also asks at the terminal (y/N) when an approval gate of the run opens, as the seed's
    /// `approval_gate` did, if stdin and stderr are terminals. The gate stays decidable from
    /// elsewhere; an answer to a gate already decided is ignored.
    pub(crate) fn asking(
        mut self,
        dirs: crate::config::Dirs,
        settings: crate::config::Settings,
    ) -> Self {
        if std::io::stdin().is_terminal() && stderr_is_tty() {
            self.asker = Some(Asker {
                dirs,
                settings,
                current: std::sync::Arc::default(),
                reader: std::sync::Once::new(),
            });
        }
        self
    }
}

/// The terminal prompt of approval gates: one reader thread for the process's stdin, which
/// applies each line to the gate asked last (if it still waits).
#[derive(Debug)]
struct Asker {
    dirs: crate::config::Dirs,
    settings: crate::config::Settings,
    /// The gate asked last and not answered: (run, step).
    current: std::sync::Arc<std::sync::Mutex<Option<(String, String)>>>,
    reader: std::sync::Once,
}

impl Asker {
    fn ask(&self, run: &str, step: &str, question: &str) {
        if let Ok(mut cur) = self.current.lock() {
            *cur = Some((run.to_owned(), step.to_owned()));
        }
        eprint!("claw: {question} [y/N] ");
        let _ = std::io::Write::flush(&mut std::io::stderr());
        self.reader.call_once(|| {
            let current = self.current.clone();
            let (dirs, settings) = (self.dirs.clone(), self.settings.clone());
            std::thread::spawn(move || answer_loop(&current, &dirs, &settings));
        });
    }
}

fn answer_loop(
    current: &std::sync::Mutex<Option<(String, String)>>,
    dirs: &crate::config::Dirs,
    settings: &crate::config::Settings,
) {
    use crate::engine::approval::{VoteResult, describe, identity};
    loop {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some((run, step)) = current.lock().ok().and_then(|mut c| c.take()) else {
            continue;
        };
        let yes = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
        let decided = crate::engine::Engine::open(dirs.clone(), settings.clone())
            .map_err(|e| e.to_string())
            .and_then(|engine| {
                let rec = engine.store.find_run(&run).map_err(|e| e.to_string())?;
                let reason = (!yes).then_some("answered no at the terminal");
                engine
                    .vote(&rec, &step, &identity(None), yes, reason, &[])
                    .map_err(|e| e.to_string())
            });
        match decided {
            Ok(VoteResult::Recorded {
                decided: Some(r), ..
            }) => eprintln!("claw: step `{step}` {}", describe(&r)),
            Ok(VoteResult::Recorded {
                approvals, quorum, ..
            }) => eprintln!("claw: approved ({approvals} of {quorum} approvals)"),
            Err(e) => eprintln!("claw: {e}"),
        }
    }
}

impl Progress for TermProgress {
    fn event(&self, event: &Event<'_>) {
        match event {
            // Waiting needs a person: say it on any stderr, terminal or not.
            Event::Waiting { message } => eprintln!("claw: {message}"),
            Event::GateOpen {
                run,
                step,
                question,
                has_input: false,
            } => {
                if let Some(asker) = &self.asker {
                    asker.ask(run, step, question);
                }
            }
            _ if !self.enabled => {}
            Event::StepStarted { name, attempt } => {
                if *attempt > 1 {
                    eprintln!("▸ {name} (attempt {attempt})");
                } else {
                    eprintln!("▸ {name}");
                }
            }
            Event::StepFinished { step } => {
                let took = human_ms(duration_ms(step.started_at, step.finished_at));
                let msg = step
                    .message
                    .as_deref()
                    .map(|m| format!("  {}", first_line(m, 100)))
                    .unwrap_or_default();
                let mark = match super::colour::Tone::of_status(step.status.as_str()) {
                    Some(tone) => {
                        super::colour::paint(super::colour::stderr(), tone, symbol(step.status))
                    }
                    None => symbol(step.status).to_owned(),
                };
                eprintln!("{mark} {} {took}{msg}", step.name);
            }
            Event::Note { message } => eprintln!("  {message}"),
            Event::GateOpen { .. } => {}
        }
    }
}

/// A plain table with aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(super::colour::visible_width(cell));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(super::colour::visible_width(cell));
                l.push_str(cell);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// The steps of a run as a table (the seed's Step / Status / Duration / Output).
pub(crate) fn steps_table(steps: &[StepRecord]) -> String {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let detail = s
                .message
                .clone()
                .filter(|m| !m.is_empty())
                .map(|m| first_line(&m, 80))
                .or_else(|| {
                    let out = if s.stdout_tail.trim().is_empty() {
                        &s.stderr_tail
                    } else {
                        &s.stdout_tail
                    };
                    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
                    let last = first_line(lines.last().copied().unwrap_or_default().trim(), 60);
                    Some(if lines.len() > 1 {
                        // Say that this is one line of several (`claw run logs` has them all).
                        format!("{last}  (last of {} lines)", lines.len())
                    } else {
                        last
                    })
                })
                .unwrap_or_default();
            // A step skipped by a decision did not run: the time until the decision is not its
            // duration.
            let took = if s.status == StepStatus::Skipped {
                "-".to_owned()
            } else {
                human_ms(duration_ms(s.started_at, s.finished_at))
            };
            let status = super::colour::status(s.status.as_str());
            vec![s.name.clone(), status, took, detail]
        })
        .collect();
    table(&["STEP", "STATUS", "DURATION", "OUTPUT"], &rows)
}

pub(crate) fn step_json(s: &StepRecord) -> serde_json::Value {
    serde_json::json!({
        "name": s.name,
        "phase": s.phase.as_str(),
        "status": s.status.as_str(),
        "exit_code": s.exit_code,
        "attempts": s.attempts,
        "started_at": rfc3339(s.started_at),
        "finished_at": rfc3339(s.finished_at),
        "duration_ms": duration_ms(s.started_at, s.finished_at),
        "message": s.message,
        "outputs": s.outputs,
        "stdout": s.stdout_tail,
        "stderr": s.stderr_tail,
        "log": s.log_path,
        "decision": s.decision.map(crate::store::Decision::as_str),
        "decided_by": s.decided_by,
    })
}

pub(crate) fn run_json(
    r: &RunRecord,
    orphaned: bool,
    steps: Option<&[StepRecord]>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": r.id,
        "workflow": r.workflow,
        "status": r.status.as_str(),
        "orphaned": orphaned,
        "dry_run": r.dry_run,
        "params": r.params,
        "trigger": r.trigger,
        "outputs": r.outputs,
        "error": r.error,
        "created_at": rfc3339(Some(r.created_at)),
        "started_at": rfc3339(r.started_at),
        "finished_at": rfc3339(r.finished_at),
        "duration_ms": duration_ms(r.started_at, r.finished_at),
        "workflow_path": r.workflow_path,
        "owner": r.owner,
        "parent_run": r.parent_run,
    });
    if let (Some(steps), Some(obj)) = (steps, v.as_object_mut()) {
        obj.insert("steps".into(), steps.iter().map(step_json).collect());
    }
    v
}

pub(crate) fn print_json(v: &serde_json::Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Phase;

    #[test]
    fn the_output_column_says_when_it_shows_one_line_of_several_and_skips_take_no_time() {
        let mut many = StepRecord::new("many", Phase::Main, 0);
        many.status = StepStatus::Succeeded;
        many.stdout_tail = "one\ntwo\n\nthree\n".into();
        let mut one = StepRecord::new("one", Phase::Main, 1);
        one.status = StepStatus::Succeeded;
        one.stdout_tail = "only\n".into();
        let mut skipped = StepRecord::new("skipped", Phase::Main, 2);
        skipped.status = StepStatus::Skipped;
        skipped.started_at = Some(1_000);
        skipped.finished_at = Some(1_000 + 14 * 60 * 1000);
        skipped.message = Some("skipped by cli:me".into());
        let t = steps_table(&[many, one, skipped]);
        assert!(t.contains("three  (last of 3 lines)"), "{t}");
        assert!(t.contains("only\n") || t.trim_end().contains("only"), "{t}");
        assert!(!t.contains("only  (last"), "{t}");
        assert!(!t.contains("14m"), "{t}");
    }
}
