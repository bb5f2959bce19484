//! The pages of what starts runs: cron (the jobs of `cron/jobs.json` and every schedule, next
//! fires, the fire history; enable, disable, run now), watchers (the rules of `watchers.yaml`
//! and the runs they started) and webhooks (the hooks the workflow files declare and the
//! deliveries that started runs). Each has its JSON twin under `/api/v1/`.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    Cell, Chrome, Col, Fail, api_action, chrome, col, csrf, form_action, html, link, page_of, pct,
    run_summary, table_rows, text, ts,
};
use crate::triggers::cron::jobs::{JobsError, JobsFile};
use crate::web::{Web, WebState, Who};

/// How many fires and triggered runs the pages show.
const RECENT: u32 = 50;

impl From<JobsError> for Fail {
    fn from(e: JobsError) -> Self {
        let status = match &e {
            JobsError::NotFound(_) => StatusCode::NOT_FOUND,
            JobsError::Ambiguous { .. } => StatusCode::CONFLICT,
            JobsError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            JobsError::Io { .. } | JobsError::Audit { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// A page of several tables, rows with buttons.

/// A button on a row: a POST (with the CSRF token) to `url`.
#[derive(Debug, Clone)]
pub(super) struct Action {
    url: String,
    label: &'static str,
    class: &'static str,
}

#[derive(Debug, Clone)]
pub(super) struct Row {
    cells: Vec<Cell>,
    actions: Vec<Action>,
}

#[derive(Debug, Clone)]
pub(super) struct Section {
    id: &'static str,
    title: &'static str,
    note: String,
    columns: Vec<&'static str>,
    rows: Vec<Row>,
    /// Whether the rows have buttons (a column for them).
    actions: bool,
}

impl Section {
    fn new(id: &'static str, title: &'static str, items: &[Value], cols: &[Col]) -> Self {
        Self {
            id,
            title,
            note: String::new(),
            columns: cols.iter().map(|c| c.label).collect(),
            rows: table_rows(items, cols)
                .into_iter()
                .map(|cells| Row {
                    cells,
                    actions: Vec::new(),
                })
                .collect(),
            actions: false,
        }
    }

    fn note(mut self, note: String) -> Self {
        self.note = note;
        self
    }
}

#[derive(askama::Template)]
#[template(path = "web/sections.html")]
pub(super) struct SectionsPage {
    chrome: Chrome,
    heading: &'static str,
    /// Where htmx reloads the page from.
    refresh: &'static str,
    note: String,
    sections: Vec<Section>,
}

fn sections(
    who: &Who,
    heading: &'static str,
    refresh: &'static str,
    note: String,
    sections: Vec<Section>,
) -> Response {
    html(
        StatusCode::OK,
        &SectionsPage {
            chrome: chrome(who, heading),
            heading,
            refresh,
            note,
            sections,
        },
    )
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

fn lines(v: &Value, key: &str) -> String {
    list(v, key).iter().map(text).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------------------------------
// Cron.

pub(super) fn data_cron(web: &Web) -> Result<Value, Fail> {
    let dirs = &web.engine.dirs;
    let now = Utc::now();
    let file = JobsFile::in_home(&dirs.home);
    let jobs: Vec<Value> = file
        .load()?
        .iter()
        .map(|j| {
            let next = j
                .compiled()
                .ok()
                .filter(|_| j.is_enabled())
                .and_then(|s| s.next_after(now));
            json!({
                "id": j.id,
                "short_id": j.short_id(),
                "name": j.name,
                "schedule": j.schedule,
                "type": j.job_type.as_str(),
                "enabled": j.is_enabled(),
                "last_run": j.last_run,
                "last_status": j.last_status,
                "next_fire": next.map(|t| crate::time::rfc3339(&t)),
            })
        })
        .collect();
    let sources = crate::triggers::cron::sources::load_sources(dirs);
    let states: std::collections::HashMap<String, crate::store::ScheduleState> = web
        .engine
        .store
        .schedule_states()?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let schedules: Vec<Value> = sources
        .entries
        .iter()
        .map(|e| {
            let st = states.get(&e.id);
            // From the persisted last fire, as the daemon computes it.
            let base = st
                .map(|s| s.last_fire.unwrap_or(s.first_seen))
                .map_or(now, crate::time::at);
            let workflow = match &e.target {
                crate::triggers::cron::sources::Target::Workflow(wf) => Some(wf.name.clone()),
                crate::triggers::cron::sources::Target::Job => None,
            };
            json!({
                "schedule": e.id,
                "name": e.label,
                "workflow": workflow,
                "expr": e.schedule.expr(),
                "last_fire": ts(st.and_then(|s| s.last_fire)),
                "next_fire": e.schedule.next_after(base).map(|t| crate::time::rfc3339(&t)),
                "fired": st.map_or(0, |s| s.fired),
                "missed": st.map_or(0, |s| s.missed),
                "skipped": st.map_or(0, |s| s.skipped),
            })
        })
        .collect();
    let fires: Vec<Value> = web
        .engine
        .store
        .list_fires(None, RECENT)?
        .iter()
        .map(|f| {
            json!({
                "schedule": f.schedule,
                "scheduled_for": ts(Some(f.scheduled_for)),
                "enqueued_at": ts(Some(f.enqueued_at)),
                "late": f.late,
                "status": f.status,
                "run_id": f.run_id,
                "detail": f.detail,
                "finished_at": ts(f.finished_at),
            })
        })
        .collect();
    Ok(json!({
        "file": file.path().display().to_string(),
        "jobs": jobs,
        "schedules": schedules,
        "paused": sources.paused,
        "fires": fires,
        "problems": sources.problems,
    }))
}

pub(crate) async fn cron(State(web): WebState, headers: HeaderMap) -> Response {
    page_of(&web, &headers, data_cron, render_cron)
}

fn render_cron(who: &Who, d: &Value) -> Response {
    let jobs_items = list(d, "jobs");
    let mut jobs = Section::new(
        "jobs",
        "Jobs",
        &jobs_items,
        &[
            col("short_id", "id"),
            col("name", "name"),
            col("schedule", "schedule"),
            col("type", "type"),
            col("enabled", "enabled"),
            col("last_run", "last run"),
            col("last_status", "status"),
            col("next_fire", "next fire"),
        ],
    )
    .note(format!("The jobs of {}.", text(&d["file"])));
    jobs.actions = true;
    for (row, job) in jobs.rows.iter_mut().zip(&jobs_items) {
        let base = format!("/cron/{}", pct(&text(&job["id"])));
        row.actions = vec![
            if job["enabled"] == json!(true) {
                Action {
                    url: format!("{base}/disable"),
                    label: "disable",
                    class: "danger",
                }
            } else {
                Action {
                    url: format!("{base}/enable"),
                    label: "enable",
                    class: "ok",
                }
            },
            Action {
                url: format!("{base}/run"),
                label: "run now",
                class: "",
            },
        ];
    }
    let schedules = Section::new(
        "schedules",
        "Schedules",
        &list(d, "schedules"),
        &[
            col("name", "name"),
            col("expr", "schedule"),
            link("workflow", "workflow", "/workflows/", "workflow"),
            col("last_fire", "last fire"),
            col("next_fire", "next fire"),
            col("fired", "fired"),
            col("missed", "missed"),
            col("skipped", "skipped"),
        ],
    )
    .note(
        "Enabled jobs and every workflow's `schedule:`; a workflow runs now from its page."
            .to_owned(),
    );
    let fires = Section::new(
        "fires",
        "Recent fires",
        &list(d, "fires"),
        &[
            col("schedule", "schedule"),
            col("scheduled_for", "for"),
            col("status", "status"),
            link("run_id", "run", "/runs/", "run_id"),
            col("late", "late"),
            col("detail", "detail"),
        ],
    );
    let problems = lines(d, "problems");
    sections(
        who,
        "Cron",
        "/cron",
        if problems.is_empty() {
            "Fired, missed (claw was down, per catch_up) and skipped (overlap: skip) count per schedule.".to_owned()
        } else {
            format!("Schedules that cannot run:\n{problems}")
        },
        vec![jobs, schedules, fires],
    )
}

api_twin!(api_cron, data_cron);

fn do_set_enabled(web: &Web, who: &Who, id: &str, on: bool) -> Result<Value, Fail> {
    let file = JobsFile::in_home(&web.engine.dirs.home);
    let (job, changed) = file.set_enabled(id, on, &who.actor())?;
    Ok(json!({"id": job.id, "name": job.name, "enabled": job.is_enabled(), "changed": changed}))
}

/// Runs a job now, as `claw cron run` does, on a thread of its own (a job may take minutes);
/// the answer is at once, the outcome on the page (last run, status) and in the audit log.
fn do_run_job(web: &Web, who: &Who, id: &str) -> Result<Value, Fail> {
    let job = JobsFile::in_home(&web.engine.dirs.home).find(id)?;
    let engine = web.engine.clone();
    let actor = who.actor();
    let job_id = job.id.clone();
    std::thread::Builder::new()
        .name("claw-cron-now".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!("dashboard: cannot run job {job_id}: {e}");
                    return;
                }
            };
            let cancel = tokio_util::sync::CancellationToken::new();
            let done = rt.block_on(crate::triggers::cron::runner::run_by_hand(
                &engine, &job_id, &actor, &cancel,
            ));
            if let Err(e) = done {
                tracing::warn!("dashboard: job {job_id}: {e}");
            }
        })
        .map_err(Fail::internal)?;
    Ok(json!({"id": job.id, "name": job.name, "started": true}))
}

/// What a POST on a job does.
#[derive(Debug, Clone, Copy)]
enum JobAction {
    Enable,
    Disable,
    Run,
}

impl JobAction {
    fn apply(self, web: &Web, who: &Who, id: &str) -> Result<Value, Fail> {
        match self {
            Self::Enable => do_set_enabled(web, who, id, true),
            Self::Disable => do_set_enabled(web, who, id, false),
            Self::Run => do_run_job(web, who, id),
        }
    }

    /// The form's POST: back to the cron page.
    fn page(self, web: &Web, headers: &HeaderMap, id: &str, csrf: Option<&str>) -> Response {
        form_action(
            web,
            headers,
            csrf,
            |who| self.apply(web, who, id),
            |_| "/cron".to_owned(),
        )
    }

    /// The API's POST: the job as JSON (202 for a run started).
    fn api(self, web: &Web, headers: &HeaderMap, id: &str) -> Response {
        let ok = match self {
            Self::Run => StatusCode::ACCEPTED,
            Self::Enable | Self::Disable => StatusCode::OK,
        };
        api_action(web, headers, ok, |who| self.apply(web, who, id))
    }
}

type CsrfForm = Form<std::collections::HashMap<String, String>>;

pub(crate) async fn cron_enable(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    JobAction::Enable.page(&web, &headers, &id, csrf(&form.0))
}

pub(crate) async fn cron_disable(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    JobAction::Disable.page(&web, &headers, &id, csrf(&form.0))
}

pub(crate) async fn cron_run(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: CsrfForm,
) -> Response {
    JobAction::Run.page(&web, &headers, &id, csrf(&form.0))
}

pub(crate) async fn api_cron_enable(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    JobAction::Enable.api(&web, &headers, &id)
}

pub(crate) async fn api_cron_disable(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    JobAction::Disable.api(&web, &headers, &id)
}

pub(crate) async fn api_cron_run(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    JobAction::Run.api(&web, &headers, &id)
}

// ---------------------------------------------------------------------------------------------
// Watchers and webhooks.

/// The runs a trigger kind started, newest first, with what started each.
fn triggered(web: &Web, kind: &str) -> Result<Vec<Value>, Fail> {
    Ok(web
        .engine
        .store
        .runs_by_trigger(kind, RECENT)?
        .iter()
        .map(|r| {
            let mut v = run_summary(r);
            let t = &r.trigger;
            v["source"] = json!(text(&t["hook"]) + &text(&t["rule"]));
            v["delivery"] = t.get("delivery").cloned().unwrap_or(Value::Null);
            v["path"] = t.get("path").cloned().unwrap_or(Value::Null);
            v["event"] = t.get("event").cloned().unwrap_or(Value::Null);
            v
        })
        .collect())
}

pub(super) fn data_watchers(web: &Web) -> Result<Value, Fail> {
    let dirs = &web.engine.dirs;
    let (file, rules, problems) = match crate::triggers::watch::rules::load(dirs) {
        Ok(set) => (
            set.path.map(|p| p.display().to_string()),
            set.rules
                .iter()
                .map(|r| {
                    let mut v = r.to_json();
                    v["events_text"] = json!(
                        r.events
                            .iter()
                            .map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    v
                })
                .collect(),
            Vec::new(),
        ),
        Err(e) => (
            crate::triggers::watch::rules::locate(dirs).map(|p| p.display().to_string()),
            Vec::new(),
            vec![e.render()],
        ),
    };
    Ok(json!({
        "file": file,
        "rules": rules,
        "problems": problems,
        "runs": triggered(web, "watcher")?,
    }))
}

pub(crate) async fn watchers(State(web): WebState, headers: HeaderMap) -> Response {
    page_of(&web, &headers, data_watchers, render_watchers)
}

fn render_watchers(who: &Who, d: &Value) -> Response {
    let note = match (d["file"].as_str(), lines(d, "problems")) {
        (None, _) => "No watchers.yaml.".to_owned(),
        (Some(f), p) if p.is_empty() => format!("The rules of {f}."),
        (Some(f), p) => format!("{f} has problems; no rule runs until they are fixed:\n{p}"),
    };
    let rules = Section::new(
        "rules",
        "Rules",
        &list(d, "rules"),
        &[
            col("name", "name"),
            col("path", "path"),
            col("pattern", "pattern"),
            col("events_text", "events"),
            col("action", "action"),
            col("command", "command"),
            col("enabled", "enabled"),
        ],
    );
    let runs = Section::new(
        "runs",
        "Runs they started",
        &list(d, "runs"),
        &[
            link("id", "run", "/runs/", "id"),
            col("source", "rule"),
            col("event", "event"),
            col("path", "file"),
            link("workflow", "workflow", "/workflows/", "workflow"),
            col("status", "status"),
            col("created_at", "started"),
        ],
    );
    sections(who, "Watchers", "/watchers", note, vec![rules, runs])
}

api_twin!(api_watchers, data_watchers);

pub(super) fn data_webhooks(web: &Web) -> Result<Value, Fail> {
    let reg = crate::triggers::webhook::server::Registry::load(&web.engine.dirs);
    let mut hooks: Vec<Value> = reg
        .hooks
        .values()
        .map(|h| {
            use crate::workflow::trigger::SecretRef;
            json!({
                "name": h.trigger.name,
                "url": format!("/hooks/{}", h.trigger.name),
                "workflow": h.workflow.name,
                "verify": h.trigger.verify.as_str(),
                // Where the secret is, never what it is.
                "secret": match &h.trigger.secret {
                    None => "none: every request is refused".to_owned(),
                    Some(SecretRef::Vault(name)) => format!("vault: {name}"),
                    Some(SecretRef::Literal(_)) => "written in the workflow file".to_owned(),
                },
            })
        })
        .collect();
    hooks.sort_by(|a, b| text(&a["name"]).cmp(&text(&b["name"])));
    let mut warnings = reg.warnings.clone();
    warnings.extend(reg.unreadable);
    Ok(json!({
        "hooks": hooks,
        "warnings": warnings,
        "deliveries": triggered(web, "webhook")?,
    }))
}

pub(crate) async fn webhooks(State(web): WebState, headers: HeaderMap) -> Response {
    page_of(&web, &headers, data_webhooks, render_webhooks)
}

fn render_webhooks(who: &Who, d: &Value) -> Response {
    let warnings = lines(d, "warnings");
    let hooks = Section::new(
        "hooks",
        "Hooks",
        &list(d, "hooks"),
        &[
            col("name", "name"),
            col("url", "POST to"),
            link("workflow", "workflow", "/workflows/", "workflow"),
            col("verify", "verification"),
            col("secret", "secret"),
        ],
    );
    let deliveries = Section::new(
        "deliveries",
        "Recent deliveries",
        &list(d, "deliveries"),
        &[
            link("id", "run", "/runs/", "id"),
            col("source", "hook"),
            col("delivery", "delivery id"),
            link("workflow", "workflow", "/workflows/", "workflow"),
            col("status", "status"),
            col("created_at", "received"),
        ],
    )
    .note("Deliveries that started a run; refused ones are in the audit log.".to_owned());
    sections(
        who,
        "Webhooks",
        "/webhooks",
        if warnings.is_empty() {
            "The hooks the workflow files declare (`triggers: - webhook:`).".to_owned()
        } else {
            format!("Warnings:\n{warnings}")
        },
        vec![hooks, deliveries],
    )
}

api_twin!(api_webhooks, data_webhooks);
