//! Intake: the seed's `claw intake run TEXT` pipeline. A request (one requirement per line) is
//! turned into tasks, each with a role (planner, executor, verifier) and a skill of the catalogue;
//! with `execute`, the mapped skills run in parallel through the skill runner (Landlock
//! confinement as their manifests declare), at most `max_workers` at once.
//!
//! Roles and skills are chosen by an LLM of claw's providers (the job role's chain), where the
//! seed asked Claude; [`Mapper::Keywords`] uses the seed's deterministic rules instead (role by
//! keyword, skill by token overlap with the skills' names, descriptions and triggers). When the
//! LLM cannot be asked, the run fails before anything is written or run.
//!
//! Files, as the seed's: `<data>/runtime/context-cleared.json` when a request starts and
//! `<data>/runtime/current_request.json` (`created_at, execute, role, requirements, tasks,
//! role_assignments`) when it ends, both written atomically. Every stage is audited as
//! `intake.*`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::audit::{Action, AuditLog, Event};
use crate::config::Dirs;
use crate::skills::Catalog;

/// A task's output is kept up to this many characters (the end of it), as in the seed.
pub const MAX_OUTPUT: usize = 2000;

/// A task's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Planner,
    Executor,
    Verifier,
}

impl Role {
    pub const NAMES: &'static [&'static str] = &["planner", "executor", "verifier"];

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "planner" => Some(Self::Planner),
            "executor" => Some(Self::Executor),
            "verifier" => Some(Self::Verifier),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planner => "planner",
            Self::Executor => "executor",
            Self::Verifier => "verifier",
        }
    }
}

/// The seed's planner keywords.
const PLANNER_WORDS: &[&str] = &[
    "plan",
    "analyze",
    "analyse",
    "design",
    "review",
    "architect",
    "research",
    "investigate",
    "evaluate",
    "assess",
    "strategy",
    "propose",
];

/// The seed's verifier keywords.
const VERIFIER_WORDS: &[&str] = &[
    "verify", "test", "check", "scan", "lint", "validate", "audit", "ensure", "confirm", "inspect",
];

/// Words that say nothing about which skill fits.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "the", "of", "to", "in", "on", "for", "with", "is", "are", "be", "all", "my",
    "me", "it", "this", "that", "please", "run", "do", "from", "at", "by", "or", "skill",
];

/// How roles and skills are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapper {
    /// Ask the LLM (the job role's provider chain).
    Llm,
    /// The seed's keyword rules, no LLM.
    Keywords,
}

/// One requirement and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: usize,
    pub requirement: String,
    pub skill: Option<String>,
    /// `planned`, `running`, `ok`, `failed` or `skipped`.
    pub status: String,
    pub output: String,
    pub error: Option<String>,
    pub assigned_role: Role,
    /// `llm`, `keywords`, or `none` (no skill fits).
    pub mapped_by: String,
}

/// The whole request, as `runtime/current_request.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub created_at: String,
    pub execute: bool,
    /// `all` or a role: only tasks of that role run.
    pub role: String,
    pub requirements: Vec<String>,
    pub tasks: Vec<Task>,
    /// Role → the ids of its tasks.
    pub role_assignments: serde_json::Map<String, Value>,
}

/// One requirement per non-empty line, a leading `-` or `*` stripped; text without line breaks
/// is one requirement.
pub fn requirements(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix('-')
                .or_else(|| l.strip_prefix('*'))
                .unwrap_or(l);
            l.trim().to_owned()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The seed's role by keyword: planner words, then verifier words, else executor.
pub fn role_by_keyword(requirement: &str) -> Role {
    let ws = words(requirement);
    let has = |list: &[&str]| {
        ws.iter()
            .any(|w| list.iter().any(|k| w == k || w.starts_with(k)))
    };
    if has(PLANNER_WORDS) {
        Role::Planner
    } else if has(VERIFIER_WORDS) {
        Role::Verifier
    } else {
        Role::Executor
    }
}

fn tokens(text: &str) -> BTreeSet<String> {
    words(text)
        .into_iter()
        .filter(|w| w.len() > 1 && !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// The skill sharing the most words with the requirement (its name, split at `-` and `_`, its
/// description, tags and triggers); ties go to the first by name. `None` when none shares one.
pub fn skill_by_keyword(requirement: &str, catalog: &Catalog) -> Option<String> {
    let want = tokens(requirement);
    let mut best: Option<(usize, &str)> = None;
    for s in &catalog.skills {
        let m = &s.manifest;
        let mut text = format!("{} {} {}", m.name, m.description, m.tags.join(" "));
        for t in &m.triggers {
            text.push(' ');
            text.push_str(&crate::skills::manifest::json_text(t));
        }
        let score = tokens(&text).intersection(&want).count();
        if score > 0 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, s.name()));
        }
    }
    best.map(|(_, n)| n.to_owned())
}

/// The prompt that asks the LLM for every requirement's role and skill.
pub fn llm_prompt(reqs: &[String], catalog: &Catalog) -> String {
    let mut p = String::from(
        "Assign each requirement a role and at most one skill.\nRoles: planner (plans, analyses, designs, reviews), executor (does the work), verifier (verifies, tests, checks, scans).\nSkills (name: description):\n",
    );
    for s in &catalog.skills {
        p.push_str(&format!("- {}: {}\n", s.name(), s.manifest.description));
    }
    p.push_str("Requirements:\n");
    for (i, r) in reqs.iter().enumerate() {
        p.push_str(&format!("{}. {}\n", i + 1, r));
    }
    p.push_str(
        "Reply with only JSON, no prose: {\"tasks\": [{\"id\": 1, \"role\": \"executor\", \"skill\": \"name\" or null}, ...]} with one entry per requirement.",
    );
    p
}

/// One requirement's pick: its role, its skill, and why it has none.
pub type Pick = (Role, Option<String>, Option<String>);

/// The LLM's reply as (role, skill, why-not) per requirement. A reply that is not the JSON asked
/// for is an error naming the field; a skill the catalogue does not have is no skill, with the
/// reason kept for the task's `error`.
pub fn parse_llm_plan(reply: &str, n: usize, catalog: &Catalog) -> Result<Vec<Pick>, String> {
    let v = crate::llm::json::repair(reply).map_err(|e| format!("the reply is not JSON: {e}"))?;
    let tasks = v
        .get("tasks")
        .and_then(Value::as_array)
        .ok_or("the reply has no `tasks` list")?;
    let mut out: Vec<Option<Pick>> = vec![None; n];
    for (i, t) in tasks.iter().enumerate() {
        let id = t
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|x| usize::try_from(x).ok())
            .filter(|x| (1..=n).contains(x))
            .ok_or_else(|| format!("tasks[{i}].id: expected a number from 1 to {n}"))?;
        let role = t
            .get("role")
            .and_then(Value::as_str)
            .and_then(Role::parse)
            .ok_or_else(|| {
                format!(
                    "tasks[{i}].role: expected one of {}",
                    Role::NAMES.join(", ")
                )
            })?;
        let (skill, why) = match t.get("skill") {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(s)) if s.is_empty() => (None, None),
            Some(Value::String(s)) if catalog.get(s).is_some() => (Some(s.clone()), None),
            Some(Value::String(s)) => (
                None,
                Some(format!(
                    "the LLM named `{s}`, which is not an installed skill"
                )),
            ),
            Some(_) => return Err(format!("tasks[{i}].skill: expected a name or null")),
        };
        if out[id - 1].replace((role, skill, why)).is_some() {
            return Err(format!("tasks[{i}].id: requirement {id} appears twice"));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| format!("the reply leaves out requirement {}", i + 1)))
        .collect()
}

/// Tasks by the seed's keyword rules.
pub fn plan_by_keywords(reqs: &[String], catalog: &Catalog) -> Vec<Task> {
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            let skill = skill_by_keyword(r, catalog);
            task(i + 1, r, role_by_keyword(r), skill, None, "keywords")
        })
        .collect()
}

fn task(
    id: usize,
    requirement: &str,
    role: Role,
    skill: Option<String>,
    why: Option<String>,
    by: &str,
) -> Task {
    let mapped_by = if skill.is_some() { by } else { "none" };
    Task {
        id,
        requirement: requirement.to_owned(),
        error: if skill.is_some() {
            None
        } else {
            Some(why.unwrap_or_else(|| "no installed skill fits this requirement".to_owned()))
        },
        skill,
        status: "planned".to_owned(),
        output: String::new(),
        assigned_role: role,
        mapped_by: mapped_by.to_owned(),
    }
}

/// Tasks from the LLM's reply.
pub fn plan_from_llm(reqs: &[String], reply: &str, catalog: &Catalog) -> Result<Vec<Task>, String> {
    let picks = parse_llm_plan(reply, reqs.len(), catalog)?;
    Ok(reqs
        .iter()
        .zip(picks)
        .enumerate()
        .map(|(i, (r, (role, skill, why)))| task(i + 1, r, role, skill, why, "llm"))
        .collect())
}

/// Asks the LLM for the plan (the job role's chain, or `provider` first).
pub async fn ask_llm(
    dirs: &Dirs,
    settings: &crate::config::Settings,
    provider: Option<&str>,
    prompt: &str,
    actor: &str,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let config = crate::steps::llm::load_config(dirs)?;
    crate::redact::register_global(config.secret_values().iter().map(String::as_str));
    let chain = config.chain(crate::llm::Role::Job, provider);
    config.provider(chain.first().map_or("", String::as_str))?;
    let mut req = crate::llm::Request::prompt(prompt);
    req.system = Some("You map requests to skills. Reply with JSON only.".to_owned());
    req.max_tokens = 2048;
    let mut sink = crate::llm::Discard;
    let ask = crate::llm::Ask {
        config: &config,
        chain: &chain,
        sink: &mut sink,
        cancel,
        actor,
        target: "claw intake",
        audit_home: Some(&dirs.home),
        kill_grace: settings.kill_grace,
    };
    crate::llm::complete(ask, &req)
        .await
        .map(|(r, _)| r.text)
        .map_err(|(e, _)| format!("the LLM request failed: {e}"))
}

/// Clears the previous request's files and audits the plan: `intake.context_cleared`,
/// `intake.requirements_extracted`, `intake.skill_mapped` / `intake.skill_map_failed` per task,
/// `intake.plan_built`.
pub fn record_plan(
    home: &Path,
    actor: &str,
    reqs: &[String],
    tasks: &[Task],
    mapper: Mapper,
) -> Result<(), String> {
    clear_context(home)?;
    audit(
        home,
        actor,
        Action::IntakeContextCleared,
        "runtime",
        "ok",
        json!({}),
    );
    audit(
        home,
        actor,
        Action::IntakeRequirementsExtracted,
        "request",
        "ok",
        json!({"count": reqs.len()}),
    );
    for t in tasks {
        match &t.skill {
            Some(s) => audit(
                home,
                actor,
                Action::IntakeSkillMapped,
                s,
                "ok",
                json!({"task": t.id, "role": t.assigned_role.as_str(), "by": t.mapped_by}),
            ),
            None => audit(
                home,
                actor,
                Action::IntakeSkillMapFailed,
                &format!("task {}", t.id),
                "failed",
                json!({"task": t.id, "error": t.error}),
            ),
        }
    }
    let by = if mapper == Mapper::Llm {
        "llm"
    } else {
        "keywords"
    };
    audit(
        home,
        actor,
        Action::IntakePlanBuilt,
        "request",
        "ok",
        json!({"tasks": tasks.len(), "mapped": tasks.iter().filter(|t| t.skill.is_some()).count(), "by": by}),
    );
    Ok(())
}

/// Writes `runtime/current_request.json` and audits `intake.session_saved`.
pub fn finish(home: &Path, actor: &str, req: &Request) -> Result<PathBuf, String> {
    let path = save(home, req)?;
    audit(
        home,
        actor,
        Action::IntakeSessionSaved,
        &path.display().to_string(),
        "ok",
        json!({"tasks": req.tasks.len()}),
    );
    Ok(path)
}

/// The plan of `reqs`: by the LLM (an error when it cannot be asked or answers badly) or by
/// keywords.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    dirs: &Dirs,
    settings: &crate::config::Settings,
    catalog: &Catalog,
    reqs: &[String],
    mapper: Mapper,
    provider: Option<&str>,
    actor: &str,
    cancel: &CancellationToken,
) -> Result<Vec<Task>, String> {
    match mapper {
        Mapper::Keywords => Ok(plan_by_keywords(reqs, catalog)),
        Mapper::Llm => {
            let prompt = llm_prompt(reqs, catalog);
            let reply = ask_llm(dirs, settings, provider, &prompt, actor, cancel).await?;
            plan_from_llm(reqs, &reply, catalog).map_err(|e| format!("the LLM's plan: {e}"))
        }
    }
}

/// A whole request from a chat (the Telegram bot's `/mode skill`): planned by the LLM, or by
/// keywords when no LLM answers (said in the reply), executed, saved; the reply text.
pub async fn chat_request(
    dirs: &Dirs,
    text: &str,
    actor: &str,
    cancel: &CancellationToken,
) -> String {
    let reqs = requirements(text);
    if reqs.is_empty() {
        return "Send one requirement per line.".to_owned();
    }
    let settings = match crate::config::Settings::load(&dirs.root) {
        Ok(s) => s,
        Err(e) => return format!("claw.yaml has errors: {}", e.render()),
    };
    let catalog = crate::skills::discover(dirs);
    let mut note = String::new();
    let (mut tasks, mapper) = match plan(
        dirs,
        &settings,
        &catalog,
        &reqs,
        Mapper::Llm,
        None,
        actor,
        cancel,
    )
    .await
    {
        Ok(t) => (t, Mapper::Llm),
        Err(e) => {
            note = format!("(no LLM plan: {e}; skills chosen by keywords)\n");
            (plan_by_keywords(&reqs, &catalog), Mapper::Keywords)
        }
    };
    if let Err(e) = record_plan(&dirs.home, actor, &reqs, &tasks, mapper) {
        return format!("Intake failed: {e}");
    }
    execute(
        dirs, &settings, &catalog, &mut tasks, None, 4, actor, cancel,
    )
    .await;
    let request = Request {
        created_at: now(),
        execute: true,
        role: "all".to_owned(),
        requirements: reqs,
        role_assignments: role_assignments(&tasks),
        tasks,
    };
    if let Err(e) = finish(&dirs.home, actor, &request) {
        return format!("Intake failed: {e}");
    }
    let mut out = format!("{note}{}", finish_text(&request.tasks));
    for t in request.tasks.iter().filter(|t| !t.output.is_empty()) {
        out.push_str(&format!("\n\n{}. {}", t.id, t.output.trim_end()));
    }
    out
}

/// `<data>/runtime`.
pub fn runtime_dir(home: &Path) -> PathBuf {
    home.join("runtime")
}

/// Records an `intake.*` entry (a failure to audit is a warning: the request goes on).
pub fn audit(home: &Path, actor: &str, action: Action, target: &str, outcome: &str, d: Value) {
    let e = Event::new(actor, action, target, outcome, d);
    if let Err(err) = AuditLog::in_dir(home).record(&e) {
        tracing::warn!("intake: not audited: {err}");
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(path, ".intake-", &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The seed's step 1: removes `runtime/*.json` and writes `context-cleared.json`.
pub fn clear_context(home: &Path) -> Result<(), String> {
    let dir = runtime_dir(home);
    crate::fsutil::create_dirs_private(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") && p.is_file() {
            std::fs::remove_file(&p)
                .map_err(|err| format!("cannot remove {}: {err}", p.display()))?;
        }
    }
    write_json(
        &dir.join("context-cleared.json"),
        &json!({"cleared_at": now(), "status": "ready"}),
    )
}

/// Writes `runtime/current_request.json`.
pub fn save(home: &Path, req: &Request) -> Result<PathBuf, String> {
    let path = runtime_dir(home).join("current_request.json");
    write_json(&path, req)?;
    Ok(path)
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Role → task ids.
pub fn role_assignments(tasks: &[Task]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for r in Role::NAMES {
        let ids: Vec<usize> = tasks
            .iter()
            .filter(|t| t.assigned_role.as_str() == *r)
            .map(|t| t.id)
            .collect();
        m.insert((*r).to_owned(), json!(ids));
    }
    m
}

/// The end of `text`, at most [`MAX_OUTPUT`] characters.
pub fn tail(text: &str) -> String {
    let n = text.chars().count();
    text.chars().skip(n.saturating_sub(MAX_OUTPUT)).collect()
}

/// Runs the tasks that have a skill and the wanted role (`None`: every role), at most
/// `max_workers` at once; the others are `skipped`. Each start and end is audited.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    dirs: &Dirs,
    settings: &crate::config::Settings,
    catalog: &Catalog,
    tasks: &mut [Task],
    only: Option<Role>,
    max_workers: usize,
    actor: &str,
    cancel: &CancellationToken,
) {
    let sem = Arc::new(tokio::sync::Semaphore::new(max_workers.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in tasks.iter_mut().enumerate() {
        let skill = match (&t.skill, only) {
            (None, _) => {
                t.status = "skipped".to_owned();
                continue;
            }
            (Some(_), Some(r)) if r != t.assigned_role => {
                t.status = "skipped".to_owned();
                t.error = Some(format!(
                    "role {} is not run (--role {})",
                    t.assigned_role.as_str(),
                    r.as_str()
                ));
                continue;
            }
            (Some(s), _) => match catalog.get(s) {
                Some(s) => s.clone(),
                None => {
                    t.status = "failed".to_owned();
                    t.error = Some(format!("skill `{s}` is not installed"));
                    continue;
                }
            },
        };
        t.status = "running".to_owned();
        let (dirs, settings, actor, cancel, sem) = (
            dirs.clone(),
            settings.clone(),
            actor.to_owned(),
            cancel.clone(),
            sem.clone(),
        );
        let id = t.id;
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            audit(
                &dirs.home,
                &actor,
                Action::IntakeTaskStarted,
                skill.name(),
                "ok",
                json!({"task": id}),
            );
            let r = crate::steps::skill::run_by_hand_echo(
                &dirs,
                &settings,
                &skill,
                &[],
                None,
                &actor,
                &cancel,
                false,
            )
            .await;
            let (status, output, error) = match r {
                Err(e) => ("failed", String::new(), Some(e.to_string())),
                Ok(rep) => match rep.outcome {
                    crate::steps::StepOutcome::Succeeded => ("ok", rep.stdout, None),
                    crate::steps::StepOutcome::Cancelled => {
                        ("failed", rep.stdout, Some("cancelled".to_owned()))
                    }
                    crate::steps::StepOutcome::Failed { reason } => {
                        ("failed", rep.stdout, Some(reason))
                    }
                },
            };
            audit(
                &dirs.home,
                &actor,
                Action::IntakeTaskCompleted,
                skill.name(),
                status,
                json!({"task": id, "error": error}),
            );
            // The runner masks the skill's vault values; the process-wide secrets too.
            let output = crate::redact::global().redact(&output).into_owned();
            (i, status, tail(&output), error)
        });
    }
    while let Some(r) = set.join_next().await {
        if let Ok((i, status, output, error)) = r
            && let Some(t) = tasks.get_mut(i)
        {
            t.status = status.to_owned();
            t.output = output;
            t.error = error;
        }
    }
    for t in tasks.iter_mut().filter(|t| t.status == "running") {
        t.status = "failed".to_owned();
        t.error = Some("the task's worker ended without a result".to_owned());
    }
}

/// The start message.
pub fn start_text(reqs: &[String], execute: bool) -> String {
    format!(
        "Intake started: {} requirement(s){}",
        reqs.len(),
        if execute {
            ", executing"
        } else {
            " (plan only)"
        }
    )
}

/// The finish message: one line per task.
pub fn finish_text(tasks: &[Task]) -> String {
    let mut s = String::from("Intake finished:");
    for t in tasks {
        s.push_str(&format!(
            "\n{}. [{}] {} → {}: {}",
            t.id,
            t.assigned_role.as_str(),
            t.requirement,
            t.skill.as_deref().unwrap_or("-"),
            t.status
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_lines_with_bullets_stripped() {
        assert_eq!(
            requirements("- check disk\n\n* scan network \n  plan the move"),
            ["check disk", "scan network", "plan the move"]
        );
        assert_eq!(requirements("one thing"), ["one thing"]);
        assert!(requirements(" \n - \n").is_empty());
    }

    #[test]
    fn roles_by_keyword_follow_the_seed() {
        assert_eq!(role_by_keyword("Plan the migration"), Role::Planner);
        assert_eq!(role_by_keyword("review the logs"), Role::Planner);
        assert_eq!(role_by_keyword("verify backups"), Role::Verifier);
        assert_eq!(role_by_keyword("scan the network"), Role::Verifier);
        assert_eq!(role_by_keyword("restart nginx"), Role::Executor);
    }

    #[test]
    fn llm_plans_are_checked_field_by_field() {
        let cat = Catalog::default();
        let ok = parse_llm_plan(
            "```json\n{\"tasks\": [{\"id\": 1, \"role\": \"verifier\", \"skill\": \"nope\"}]}\n```",
            1,
            &cat,
        )
        .expect("plan");
        assert_eq!(ok[0].0, Role::Verifier);
        assert!(ok[0].1.is_none());
        assert!(ok[0].2.as_deref().is_some_and(|w| w.contains("nope")));
        let bad = |r: &str| parse_llm_plan(r, 2, &cat).expect_err("bad");
        assert!(bad("hello").contains("not JSON"));
        assert!(bad("{\"tasks\": [{\"id\": 3, \"role\": \"executor\"}]}").contains("tasks[0].id"));
        assert!(bad("{\"tasks\": [{\"id\": 1, \"role\": \"boss\"}]}").contains("tasks[0].role"));
        assert!(
            bad("{\"tasks\": [{\"id\": 1, \"role\": \"executor\"}]}").contains("requirement 2")
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        let long = "x".repeat(MAX_OUTPUT) + "END";
        let t = tail(&long);
        assert_eq!(t.chars().count(), MAX_OUTPUT);
        assert!(t.ends_with("END"));
    }
}
