//! The dashboard and its JSON API (`/api/v1`), served by `claw serve` on the webhook listener.
//!
//! Server-rendered pages (askama templates, escaped by default) with htmx and the stylesheet
//! embedded in the binary; every page's data is also served as JSON under `/api/v1/`.
//!
//! Security, in the order a request meets it:
//! - without any dashboard user (store or `DASHBOARD_USER`/`DASHBOARD_PASS`) every page and API
//!   answers 503 naming the command that fixes it;
//! - a request is someone's through a session cookie (server-side session, idle and absolute
//!   expiry, HttpOnly, SameSite=Strict, `Secure` and `__Host-` under TLS) or an API token
//!   (`Authorization: Bearer`); the store keeps only the SHA-256 of either;
//! - a state-changing request on a session must come from this origin (`Origin`, else
//!   `Referer`) and carry the session's CSRF token (form field `csrf` or `X-CSRF-Token`);
//! - logins are throttled per client address and per user name ([`auth::Throttle`]);
//! - every response body passes the process-wide redactor; every login, failure, logout and
//!   action is audited as `dashboard:<user>`.

pub mod auth;
mod pages;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::Engine;
use crate::secret::Secret;
use crate::store::DashboardSession;
use crate::triggers::launch::Execution;

/// The client's address, put into each request by the listener.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The text of the 503 answered while no user can log in.
pub const NO_USER: &str = "No dashboard user: create one with `claw dashboard user add NAME` (or set DASHBOARD_USER and DASHBOARD_PASS), then reload.";

/// What the dashboard serves from.
#[derive(Debug)]
pub struct Web {
    pub engine: Arc<Engine>,
    /// How runs started here are executed.
    pub execution: Execution,
    /// The seed's single user (`DASHBOARD_USER`/`DASHBOARD_PASS`), when both are set and the
    /// password is strong enough.
    seed: Option<(String, Secret)>,
    /// Served over TLS: cookies are `Secure` and `__Host-` prefixed.
    pub tls: bool,
    throttle: Mutex<auth::Throttle>,
}

impl Web {
    /// The dashboard of `engine`. `log` receives a line about the seed's credentials when they
    /// are set but refused.
    pub fn new(engine: Arc<Engine>, execution: Execution, tls: bool, log: &dyn Fn(&str)) -> Self {
        let (layers, _) = crate::vault::settings(
            &engine.dirs.root,
            &engine.dirs.home,
            std::collections::BTreeMap::new(),
        );
        let get = |name: &str| {
            crate::config::resolve::DEFS
                .iter()
                .find(|d| d.name == name)
                .and_then(|d| layers.get(*d).value)
        };
        let seed = match (get("DASHBOARD_USER"), get("DASHBOARD_PASS")) {
            (Some(user), Some(pass)) => {
                crate::redact::register_global([pass.as_str()]);
                match auth::check_strength(&user, &pass) {
                    Ok(()) => Some((user, Secret::new(pass))),
                    Err(why) => {
                        log(&format!(
                            "dashboard: DASHBOARD_PASS is not used: {why}; set a stronger one or add a user with `claw dashboard user add NAME`"
                        ));
                        None
                    }
                }
            }
            _ => None,
        };
        Self {
            engine,
            execution,
            seed,
            tls,
            throttle: Mutex::new(auth::Throttle::default()),
        }
    }

    fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-claw_session"
        } else {
            "claw_session"
        }
    }

    /// Whether anyone can log in.
    fn has_users(&self) -> bool {
        self.seed.is_some()
            || self
                .engine
                .store
                .dashboard_users()
                .is_ok_and(|u| !u.is_empty())
    }

    fn user_exists(&self, name: &str) -> bool {
        self.seed.as_ref().is_some_and(|(u, _)| u == name)
            || matches!(self.engine.store.dashboard_password(name), Ok(Some(_)))
    }

    /// Tells whoever executes runs that `run_id` was queued.
    fn wake(&self, run_id: &str) {
        match &self.execution {
            Execution::Queue => {}
            Execution::QueueAndWake(n) => n.notify_one(),
            Execution::Drive(driver) => {
                // Nobody here waits for the outcome: the run page shows it.
                drop(driver.submit(run_id.to_owned()));
            }
        }
    }

    fn audit(
        &self,
        user: &str,
        action: crate::audit::Action,
        target: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) {
        let event = crate::audit::Event::new(
            &format!("dashboard:{user}"),
            action,
            target,
            outcome,
            detail,
        );
        if let Err(e) = self.engine.audit.record(&event) {
            tracing::warn!("dashboard: cannot write the audit log: {e}");
        }
    }
}

/// Who a request is from.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub(crate) user: String,
    /// The session's CSRF token; `None` for an API token (no cookie, nothing to forge).
    pub(crate) csrf: Option<String>,
    pub(crate) session: Option<String>,
}

impl Who {
    pub(crate) fn actor(&self) -> String {
        format!("dashboard:{}", self.user)
    }
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Why a request is not served.
#[derive(Debug)]
pub(crate) enum Refusal {
    NoUsers,
    /// No valid session or token.
    Anonymous,
    Forbidden(String),
}

/// The request's user, from an API token or a live session.
pub(crate) fn authenticate(web: &Web, headers: &HeaderMap) -> Result<Who, Refusal> {
    if !web.has_users() {
        return Err(Refusal::NoUsers);
    }
    let now = crate::time::now_ms();
    let store = &web.engine.store;
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return match store.api_token_user(&auth::token_hash(token.trim()), now) {
            Ok(Some(user)) => Ok(Who {
                user,
                csrf: None,
                session: None,
            }),
            _ => Err(Refusal::Anonymous),
        };
    }
    let Some(id) = cookie(headers, web.cookie_name()) else {
        return Err(Refusal::Anonymous);
    };
    let id_hash = auth::token_hash(id);
    let Ok(Some(s)) = store.session(&id_hash) else {
        return Err(Refusal::Anonymous);
    };
    if now - s.last_seen > auth::IDLE_MS
        || now - s.created_at > auth::ABSOLUTE_MS
        || !web.user_exists(&s.user)
    {
        let _ = store.end_session(&id_hash);
        return Err(Refusal::Anonymous);
    }
    if now - s.last_seen > 10_000 {
        let _ = store.touch_session(&id_hash, now);
    }
    Ok(Who {
        user: s.user,
        csrf: Some(s.csrf),
        session: Some(id_hash),
    })
}

/// Whether a state-changing request comes from this origin: the host of `Origin` (else of
/// `Referer`) must be the request's `Host`, over http or https (a TLS proxy in front turns one
/// into the other); neither header is a refusal.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return Err("the request has no Host".to_owned());
    };
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let r = headers.get(header::REFERER)?.to_str().ok()?;
            let (scheme, rest) = r.split_once("://")?;
            let authority = rest.split('/').next()?;
            Some(format!("{scheme}://{authority}"))
        });
    let Some(origin) = origin else {
        return Err("the request names no Origin".to_owned());
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    if authority == Some(host) {
        Ok(())
    } else {
        Err(format!("the request comes from another origin ({origin})"))
    }
}

/// The checks of a state-changing request: API tokens pass; a session needs this origin and
/// its CSRF token (`X-CSRF-Token` or the form's `csrf`). Refusals are audited.
pub(crate) fn check_change(
    web: &Web,
    who: &Who,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), Refusal> {
    let Some(expected) = &who.csrf else {
        return Ok(());
    };
    let refuse = |why: String| {
        web.audit(
            &who.user,
            crate::audit::Action::DashboardRefused,
            "",
            "refused",
            serde_json::json!({"why": why}),
        );
        Refusal::Forbidden(why)
    };
    same_origin(headers).map_err(refuse)?;
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(form_token);
    match given {
        Some(t) if auth::same(t, expected) => Ok(()),
        Some(_) => Err(refuse("the CSRF token is wrong".to_owned())),
        None => Err(refuse("the request has no CSRF token".to_owned())),
    }
}

/// Starts a session for `user`: the cookie to set.
pub(crate) fn open_session(web: &Web, user: &str) -> Result<String, String> {
    let id = auth::random_token()?;
    let now = crate::time::now_ms();
    let _ = web
        .engine
        .store
        .prune_sessions(now - auth::IDLE_MS, now - auth::ABSOLUTE_MS);
    web.engine
        .store
        .create_session(&DashboardSession {
            id_hash: auth::token_hash(&id),
            user: user.to_owned(),
            csrf: auth::random_token()?,
            created_at: now,
            last_seen: now,
        })
        .map_err(|e| e.to_string())?;
    Ok(session_cookie(web, &id, auth::ABSOLUTE_MS / 1000))
}

fn session_cookie(web: &Web, value: &str, max_age: i64) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        web.cookie_name(),
        if web.tls { "; Secure" } else { "" }
    )
}

/// Checks a user name and password (the store's users first, then the seed's), off the async
/// thread (argon2 takes tens of milliseconds on purpose).
pub(crate) async fn verify_login(web: &Arc<Web>, user: &str, password: &str) -> bool {
    let stored = web.engine.store.dashboard_password(user).ok().flatten();
    if let Some(hash) = stored {
        let password = password.to_owned();
        return tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
            .await
            .unwrap_or(false);
    }
    match &web.seed {
        Some((u, p)) if u == user => auth::same(password, p.expose()),
        _ => false,
    }
}

/// Whether the client or user may try a login now (see [`auth::Throttle`]).
pub(crate) fn throttled(web: &Web, client: &str, user: &str) -> bool {
    web.throttle
        .lock()
        .map(|mut t| t.blocked(client, user, std::time::Instant::now()))
        .unwrap_or(true)
}

pub(crate) fn count_failure(web: &Web, client: &str, user: &str) {
    if let Ok(mut t) = web.throttle.lock() {
        t.fail(client, user, std::time::Instant::now());
    }
}

/// Headers every dashboard answer carries: no framing, no sniffing, no caching, scripts only
/// from here (htmx's eval is off as well), and the redactor over the body.
async fn harden(req: Request, next: Next) -> Response {
    let sse = req.uri().path().ends_with("/stream");
    let res = next.run(req).await;
    let (mut parts, body) = res.into_parts();
    let h = &mut parts.headers;
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if sse {
        return Response::from_parts(parts, body);
    }
    // Bodies are small pages and JSON documents; the redactor sees each whole.
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the response",
        )
            .into_response();
    };
    let masked = crate::redact::global().redact_bytes(&bytes).into_owned();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(masked))
}

/// The dashboard's routes, to merge beside the webhooks.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/cancel", post(pages::cancel))
        .route("/runs/{id}/decide", post(pages::decide))
        .route("/runs/{id}/rerun", post(pages::rerun))
        .route("/runs/{id}/steps/{step}/stream", get(pages::log_stream))
        .route("/workflows", get(pages::workflows))
        .route("/workflows/{name}", get(pages::workflow))
        .route("/workflows/{name}/run", post(pages::start))
        .route("/approvals", get(pages::approvals))
        .route("/audit", get(pages::audit))
        .route("/vault", get(pages::vault))
        .route("/outbox", get(pages::outbox))
        .route("/skills", get(pages::skills))
        .route("/hosts", get(pages::hosts))
        .route("/cron", get(pages::triggers::cron))
        .route("/cron/{id}/enable", post(pages::triggers::cron_enable))
        .route("/cron/{id}/disable", post(pages::triggers::cron_disable))
        .route("/cron/{id}/run", post(pages::triggers::cron_run))
        .route("/watchers", get(pages::triggers::watchers))
        .route("/webhooks", get(pages::triggers::webhooks))
        .route("/memory", get(pages::memory::memory))
        .route("/llm", get(pages::llm::llm))
        .route("/static/htmx.min.js", get(pages::htmx))
        .route("/static/app.css", get(pages::css))
        .route("/static/app.js", get(pages::app_js))
        .route("/api/v1/openapi.json", get(pages::openapi))
        .route("/api/v1/overview", get(pages::api_overview))
        .route("/api/v1/runs", get(pages::api_runs))
        .route("/api/v1/runs/{id}", get(pages::api_run))
        .route("/api/v1/runs/{id}/cancel", post(pages::api_cancel))
        .route("/api/v1/runs/{id}/decide", post(pages::api_decide))
        .route("/api/v1/runs/{id}/rerun", post(pages::api_rerun))
        .route("/api/v1/workflows", get(pages::api_workflows))
        .route("/api/v1/workflows/{name}", get(pages::api_workflow))
        .route("/api/v1/workflows/{name}/run", post(pages::api_start))
        .route("/api/v1/approvals", get(pages::api_approvals))
        .route("/api/v1/audit", get(pages::api_audit))
        .route("/api/v1/vault", get(pages::api_vault))
        .route("/api/v1/outbox", get(pages::api_outbox))
        .route("/api/v1/skills", get(pages::api_skills))
        .route("/api/v1/hosts", get(pages::api_hosts))
        .route("/api/v1/cron", get(pages::triggers::api_cron))
        .route(
            "/api/v1/cron/{id}/enable",
            post(pages::triggers::api_cron_enable),
        )
        .route(
            "/api/v1/cron/{id}/disable",
            post(pages::triggers::api_cron_disable),
        )
        .route("/api/v1/cron/{id}/run", post(pages::triggers::api_cron_run))
        .route("/api/v1/watchers", get(pages::triggers::api_watchers))
        .route("/api/v1/webhooks", get(pages::triggers::api_webhooks))
        .route("/api/v1/memory", get(pages::memory::api_memory))
        .route("/api/v1/llm", get(pages::llm::api_llm))
        .route("/metrics", get(pages::metrics))
        .layer(axum::middleware::from_fn(harden))
        .with_state(web)
}

/// The paths of the JSON API, as the OpenAPI description lists them (checked by a test).
pub const API_PATHS: &[&str] = &[
    "/api/v1/overview",
    "/api/v1/runs",
    "/api/v1/runs/{id}",
    "/api/v1/runs/{id}/cancel",
    "/api/v1/runs/{id}/decide",
    "/api/v1/runs/{id}/rerun",
    "/api/v1/workflows",
    "/api/v1/workflows/{name}",
    "/api/v1/workflows/{name}/run",
    "/api/v1/approvals",
    "/api/v1/audit",
    "/api/v1/vault",
    "/api/v1/outbox",
    "/api/v1/skills",
    "/api/v1/hosts",
    "/api/v1/cron",
    "/api/v1/cron/{id}/enable",
    "/api/v1/cron/{id}/disable",
    "/api/v1/cron/{id}/run",
    "/api/v1/watchers",
    "/api/v1/webhooks",
    "/api/v1/memory",
    "/api/v1/llm",
];

pub(crate) type WebState = State<Arc<Web>>;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests;
