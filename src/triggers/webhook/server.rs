//! The webhook router the daemon mounts: `POST /hooks/{name}`.
//!
//! | answer | when |
//! |---|---|
//! | 202 `{"run_id"}` | verified; a run was created (queued for the daemon, or driven here) |
//! | 200 `{"run_id", "duplicate": true}` | the delivery id was seen before: no second run |
//! | 401 | not verified, or the hook has no secret (fail-closed); the reason goes to the log only |
//! | 404 | no workflow declares this hook (the body names no hook) |
//! | 405 | not a POST |
//! | 408 | the body did not arrive within 10 s |
//! | 413 | the body is over the limit (default 1 MiB), or declares it will be |
//! | 503 | too many bodies are being received at once (16 MiB in all); retry later |
//! | 422 | the workflow cannot start (its params need values a webhook does not give) |
//! | 500 | the store or the vault failed |

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::verify::{self, Refusal};
use crate::config::Dirs;
use crate::engine::Engine;
use crate::store::Delivery;
use crate::triggers::launch::{Execution, Launcher};
use crate::workflow::Workflow;
use crate::workflow::trigger::{SecretRef, Trigger, WebhookTrigger};

/// The default body size limit.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// How long a request's body may take to arrive.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Bodies are read before they can be verified (a signature covers the body): all the bodies
/// being received at once may hold this many KiB, so that stalled unauthenticated uploads
/// cannot grow the daemon's memory without bound.
pub const BODY_BUDGET_KIB: usize = 16 * 1024;

/// How long delivery ids are remembered for dedupe.
pub const DEDUPE_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

/// Request headers copied into `trigger.headers` (never one that carries a secret).
pub const PASSED_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-gitlab-event",
    "x-slack-request-timestamp",
    "x-slack-retry-num",
    "x-slack-retry-reason",
    "x-request-id",
    "idempotency-key",
];

/// A hook and the workflow it starts.
#[derive(Debug, Clone)]
pub struct Hook {
    pub trigger: WebhookTrigger,
    pub workflow: Workflow,
}

/// Every hook declared by the workflow files.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub hooks: HashMap<String, Hook>,
    /// Names declared by more than one workflow: refused until that is fixed.
    pub conflicts: HashMap<String, Vec<PathBuf>>,
    /// Workflow files that do not load, and advice (literal secrets, hooks without one).
    pub warnings: Vec<String>,
    /// Why the files could not all be read (an I/O error, not their content): this registry is
    /// incomplete and is not put in place of the one before.
    pub unreadable: Option<String>,
}

impl Registry {
    /// Reads every workflow file's `triggers:`.
    pub fn load(dirs: &Dirs) -> Self {
        let mut reg = Self::default();
        let mut seen: HashMap<String, Vec<PathBuf>> = HashMap::new();
        let files = match crate::workflow::catalogue::Catalogue::new(dirs).try_files() {
            Ok(f) => f,
            Err(e) => {
                reg.unreadable = Some(e.to_string());
                return reg;
            }
        };
        for path in files {
            let wf = match crate::workflow::load::load_file(&path) {
                Ok(wf) => wf,
                Err(e) => {
                    if let Err(io) = std::fs::read(&path)
                        && io.kind() != std::io::ErrorKind::NotFound
                    {
                        reg.unreadable = Some(format!("cannot read {}: {io}", path.display()));
                        return reg;
                    }
                    // A broken file's hooks are unknown: they answer 404 until it is fixed.
                    let first = e
                        .diagnostics
                        .first()
                        .map(crate::diagnostic::Diagnostic::headline)
                        .unwrap_or_default();
                    reg.warnings.push(format!(
                        "{first} ({} problem(s) in all; its webhooks are not served until it is fixed)",
                        e.diagnostics.len()
                    ));
                    continue;
                }
            };
            for t in &wf.triggers {
                if let Trigger::Webhook(w) = t {
                    reg.warnings.extend(w.warnings());
                    seen.entry(w.name.clone()).or_default().push(path.clone());
                    reg.hooks.insert(
                        w.name.clone(),
                        Hook {
                            trigger: w.clone(),
                            workflow: wf.clone(),
                        },
                    );
                }
            }
        }
        for (name, files) in seen {
            if files.len() > 1 {
                reg.hooks.remove(&name);
                reg.warnings.push(format!(
                    "webhook `{name}` is declared by several workflows ({}); it refuses every request until only one does",
                    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
                ));
                reg.conflicts.insert(name, files);
            }
        }
        reg
    }
}

/// A line for the daemon's log.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// What the router needs.
pub struct WebhookState {
    pub engine: Arc<Engine>,
    /// Queue the runs for the daemon, or drive them here.
    pub execution: Execution,
    pub max_body: usize,
    /// KiB of bodies that may be in memory at once ([`BODY_BUDGET_KIB`]).
    body_budget: Arc<tokio::sync::Semaphore>,
    registry: RwLock<Arc<Registry>>,
    log: LogSink,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("execution", &self.execution)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl WebhookState {
    /// Loads the hooks from the engine's workflow folders; writes their warnings to `log`.
    pub fn new(engine: Arc<Engine>, execution: Execution, log: LogSink) -> Self {
        let state = Self {
            engine,
            execution,
            max_body: DEFAULT_MAX_BODY,
            body_budget: Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET_KIB)),
            registry: RwLock::new(Arc::new(Registry::default())),
            log,
        };
        state.reload();
        state
    }

    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Reads the workflow files again (the daemon calls this when they change, or on SIGHUP).
    pub fn reload(&self) -> Arc<Registry> {
        let reg = Registry::load(&self.engine.dirs);
        if let Some(why) = &reg.unreadable {
            // Not "the hooks are gone": keep serving those known.
            (self.log)(&format!("webhooks: {why}; keeping the hooks loaded before"));
            return self.registry();
        }
        let reg = Arc::new(reg);
        for w in &reg.warnings {
            (self.log)(&format!("webhooks: {w}"));
        }
        *self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reg.clone();
        reg
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn log(&self, line: &str) {
        (self.log)(line);
    }
}

/// `POST /hooks/{name}`; other methods get 405.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/hooks/{name}", post(receive))
        .with_state(state)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    answer(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}))
}

/// A name from the request line as it may appear in the log: control characters and
/// everything outside printable ASCII escaped (no forged lines, no terminal escapes), at most 80
/// characters.
pub fn shown(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().count() > 80 {
        out.push('…');
    }
    out
}

async fn receive(
    State(st): State<Arc<WebhookState>>,
    Path(raw_name): Path<String>,
    req: Request,
) -> Response {
    let name = shown(&raw_name);
    let registry = st.registry();
    if registry.conflicts.contains_key(&raw_name) {
        st.log(&format!(
            "webhook `{name}`: refused (401): declared by several workflows"
        ));
        return unauthorized();
    }
    let Some(hook) = registry.hooks.get(&raw_name).cloned() else {
        st.log(&format!("webhook `{name}`: no such hook (404)"));
        return answer(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    };
    let (parts, body) = req.into_parts();
    let too_large = || {
        st.log(&format!(
            "webhook `{name}`: refused (413): body over {} bytes",
            st.max_body
        ));
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("body over {} bytes", st.max_body)}),
        )
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body as u64) {
        return too_large();
    }
    // Room for the whole body (as declared, or the limit) in the budget, or 503 at once.
    let reserve = declared.map_or(st.max_body, |n| usize::try_from(n).unwrap_or(st.max_body));
    let kib = u32::try_from(reserve / 1024 + 1).unwrap_or(u32::MAX);
    let Ok(_reserved) = st.body_budget.clone().try_acquire_many_owned(kib) else {
        st.log(&format!(
            "webhook `{name}`: refused (503): too many bodies being received at once"
        ));
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "busy: too many requests being received; retry later"}),
        );
    };
    // Over the limit (or cut off by the client): nothing of it is used.
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, st.max_body)).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => return too_large(),
            Err(_) => {
                st.log(&format!(
                    "webhook `{name}`: refused (408): the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ));
                return answer(
                    StatusCode::REQUEST_TIMEOUT,
                    json!({"error": "the body did not arrive in time"}),
                );
            }
        };
    match check(&st, &hook.trigger, &parts.headers, &body).await {
        Ok(()) => {}
        Err(Check::Refused(why)) => {
            st.log(&format!("webhook `{name}`: refused (401): {why}"));
            return unauthorized();
        }
        Err(Check::Fault(why)) => {
            st.log(&format!("webhook `{name}`: error (500): {why}"));
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal error"}),
            );
        }
    }
    let delivery = delivery_id(&hook.trigger, &parts.headers, &body);
    let st2 = st.clone();
    let result =
        tokio::task::spawn_blocking(move || start(&st2, &hook, &parts.headers, &body, delivery))
            .await
            .unwrap_or_else(|e| {
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("task failed: {e}"),
                ))
            });
    match result {
        Ok(Accepted::New(run_id)) => {
            st.log(&format!("webhook `{name}`: accepted (202): run {run_id}"));
            answer(StatusCode::ACCEPTED, json!({"run_id": run_id}))
        }
        Ok(Accepted::Duplicate(run_id)) => {
            st.log(&format!(
                "webhook `{name}`: duplicate delivery (200): run {}",
                run_id.as_deref().unwrap_or("(starting)")
            ));
            answer(StatusCode::OK, json!({"run_id": run_id, "duplicate": true}))
        }
        Err((status, why)) => {
            st.log(&format!(
                "webhook `{name}`: error ({}): {why}",
                status.as_u16()
            ));
            let msg = if status == StatusCode::UNPROCESSABLE_ENTITY {
                why
            } else {
                "internal error".to_owned()
            };
            answer(status, json!({"error": msg}))
        }
    }
}

enum Check {
    Refused(String),
    Fault(String),
}

/// Resolves the hook's secret (the vault is read at request time) and verifies the request.
async fn check(
    st: &Arc<WebhookState>,
    hook: &WebhookTrigger,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Check> {
    let secret = match &hook.secret {
        None => return Err(Check::Refused(Refusal::NoSecret.to_string())),
        Some(SecretRef::Literal(s)) => s.clone(),
        Some(SecretRef::Vault(key)) => {
            let home = st.engine.dirs.home.clone();
            let key2 = key.clone();
            let got =
                tokio::task::spawn_blocking(move || crate::vault::Vault::new(&home).get(&key2))
                    .await
                    .map_err(|e| Check::Fault(format!("vault task failed: {e}")))?;
            match got {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return Err(Check::Refused(format!(
                        "its secret `{key}` is not in the vault (claw vault set {key}); every request is refused"
                    )));
                }
                Err(e) => return Err(Check::Fault(format!("cannot read secret `{key}`: {e}"))),
            }
        }
    };
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    verify::verify(
        hook.verify,
        secret.expose().as_bytes(),
        &header,
        body,
        crate::engine::now_ms() / 1000,
    )
    .map_err(|r| Check::Refused(r.to_string()))
}

/// The sender's id for this delivery, when it gives one.
pub fn delivery_id(hook: &WebhookTrigger, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let specific = match hook.verify {
        verify::Method::HmacSha256 => h("x-github-delivery").map(|d| format!("github:{d}")),
        verify::Method::Telegram => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("update_id").and_then(serde_json::Value::as_i64))
            .map(|id| format!("telegram:{id}")),
        verify::Method::Slack => match (h("x-slack-request-timestamp"), h("x-slack-signature")) {
            (Some(ts), Some(sig)) => Some(format!("slack:{ts}:{sig}")),
            _ => None,
        },
        verify::Method::Bearer => None,
    };
    specific
        .or_else(|| h("idempotency-key").map(|k| format!("key:{k}")))
        .or_else(|| h("x-request-id").map(|k| format!("request:{k}")))
        .map(|id| id.chars().take(200).collect())
}

enum Accepted {
    New(String),
    Duplicate(Option<String>),
}

/// The body as `trigger.body`: JSON when it parses, else text.
pub fn body_value(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Dedupes, creates the run, audits it (blocking: store and audit log). The store's writes reach
/// the disk together before this returns (and so before the 202): with the daemon's group
/// commit, deliveries arriving at once share one sync.
fn start(
    st: &WebhookState,
    hook: &Hook,
    headers: &HeaderMap,
    body: &[u8],
    delivery: Option<String>,
) -> Result<Accepted, (StatusCode, String)> {
    let mut result = None;
    st.engine.store.durable_together(&mut || {
        result = Some(start_run(st, hook, headers, body, delivery.clone()));
    });
    result.unwrap_or_else(|| {
        Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the delivery was not recorded".to_owned(),
        ))
    })
}

fn start_run(
    st: &WebhookState,
    hook: &Hook,
    headers: &HeaderMap,
    body: &[u8],
    delivery: Option<String>,
) -> Result<Accepted, (StatusCode, String)> {
    let engine = &st.engine;
    let name = &hook.trigger.name;
    let fault = |e: &dyn std::fmt::Display| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    if let Some(id) = &delivery {
        let now = crate::engine::now_ms();
        match engine
            .store
            .claim_delivery(name, id, now, now - DEDUPE_WINDOW_MS)
            .map_err(|e| fault(&e))?
        {
            Delivery::New => {}
            Delivery::Seen { run_id } => return Ok(Accepted::Duplicate(run_id)),
        }
    }
    let kept: serde_json::Map<String, serde_json::Value> = PASSED_HEADERS
        .iter()
        .filter_map(|n| {
            headers
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .map(|v| ((*n).to_owned(), serde_json::Value::String(v.to_owned())))
        })
        .collect();
    let mut trigger = json!({
        "type": "webhook",
        "hook": name,
        "body": body_value(body),
        "headers": kept,
    });
    if let Some(id) = &delivery {
        trigger["delivery"] = id.clone().into();
    }
    let launcher = Launcher::new(engine.clone(), st.execution.clone());
    let started = match launcher.start(&hook.workflow, &[], trigger) {
        Ok(s) => s,
        Err(e) => {
            if let Some(id) = &delivery {
                let _ = engine.store.set_delivery_run(name, id, None);
            }
            let status = match e {
                crate::triggers::launch::LaunchError::Invalid(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return Err((status, e.to_string()));
        }
    };
    let run_id = started.run.id.clone();
    if let Some(id) = &delivery {
        engine
            .store
            .set_delivery_run(name, id, Some(&run_id))
            .map_err(|e| fault(&e))?;
    }
    let event = crate::audit::Event::new(
        &format!("webhook:{name}"),
        crate::audit::Action::WebhookAccepted,
        &run_id,
        "ok",
        json!({"workflow": hook.workflow.name, "delivery": delivery}),
    );
    // Written now, on disk with the next synced entry: the run row is the durable record of the
    // delivery (a crash of claw cannot lose a written entry; a power cut can lose the last ones).
    if let Err(e) = engine
        .audit
        .record_batch(std::slice::from_ref(&event), false)
    {
        st.log(&format!("webhook `{name}`: warning: not audited: {e}"));
    }
    Ok(Accepted::New(run_id))
}

/// For a daemon that wants nothing logged.
pub fn no_log() -> LogSink {
    Arc::new(|_: &str| {})
}

/// Writes each line to stderr.
pub fn stderr_log() -> LogSink {
    Arc::new(|line: &str| eprintln!("{line}"))
}
