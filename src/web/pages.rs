//! The pages and their JSON twins. Each page's data is built once as JSON (`data_*`), served
//! as is under `/api/v1/` and rendered into a template for the page.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{NO_USER, Peer, Refusal, Web, WebState, Who};
use crate::audit::Action;
use crate::store::{RunQuery, RunRecord, RunStatus, StepRecord, StepStatus};

/// A failure to answer, with its status.
#[derive(Debug)]
pub(crate) struct Fail {
    status: StatusCode,
    message: String,
}

impl Fail {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<crate::store::StoreError> for Fail {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NoSuchRun(_) => {
                Self::new(StatusCode::NOT_FOUND, e.to_string())
            }
            e => Self::internal(e),
        }
    }
}

impl From<crate::engine::EngineError> for Fail {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        let status = match &e {
            E::Invalid(_) | E::Busy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::Denied(_) => StatusCode::FORBIDDEN,
            E::Store(crate::store::StoreError::NoSuchRun(_)) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<crate::triggers::launch::LaunchError> for Fail {
    fn from(e: crate::triggers::launch::LaunchError) -> Self {
        use crate::triggers::launch::LaunchError as L;
        match e {
            L::NotFound(m) => Self::new(StatusCode::NOT_FOUND, m),
            L::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            L::Engine(e) => e.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Answers.

/// What every page shows around its content.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    title: String,
    user: String,
    csrf: String,
}

fn chrome(who: &Who, title: &str) -> Chrome {
    Chrome {
        title: title.to_owned(),
        user: who.user.clone(),
        csrf: who.csrf.clone().unwrap_or_default(),
    }
}

fn html(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("template: {e}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "web/message.html")]
struct MessagePage {
    title: String,
    message: String,
    login: bool,
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(
        status,
        &MessagePage {
            title: title.to_owned(),
            message: text.to_owned(),
            login: status == StatusCode::UNAUTHORIZED,
        },
    )
}

fn page_refusal(r: Refusal) -> Response {
    match r {
        Refusal::NoUsers => message(StatusCode::SERVICE_UNAVAILABLE, "Not set up", NO_USER),
        Refusal::Anonymous => {
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()
        }
        Refusal::Forbidden(why) => message(
            StatusCode::FORBIDDEN,
            "Refused",
            &format!("Refused: {why}. Nothing was changed."),
        ),
    }
}

fn api_refusal(r: Refusal) -> Response {
    match r {
        Refusal::NoUsers => json_error(StatusCode::SERVICE_UNAVAILABLE, NO_USER),
        Refusal::Anonymous => {
            let mut res = json_error(
                StatusCode::UNAUTHORIZED,
                "log in, or send `Authorization: Bearer <token>`",
            );
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        Refusal::Forbidden(why) => json_error(
            StatusCode::FORBIDDEN,
            &format!("refused: {why}; nothing was changed"),
        ),
    }
}

fn json_error(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({"error": text}))).into_response()
}

/// A request's JSON object (an empty body is `{}`); anything else is a 400 in JSON.
fn json_body(bytes: &[u8]) -> Result<Value, Fail> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(e) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )),
    }
}

fn api(result: Result<Value, Fail>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(f) => json_error(f.status, &f.message),
    }
}

fn page_fail(who: &Who, f: &Fail) -> Response {
    let _ = who;
    message(f.status, "Error", &f.message)
}

fn see_other(to: &str) -> Response {
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    // htmx follows a redirect itself; this tells it to load the page as a whole.
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert("hx-redirect", v);
    }
    res
}

/// Milliseconds since the epoch as RFC 3339 (UTC), or empty.
fn ts(ms: Option<i64>) -> String {
    ms.map(|m| crate::time::instant::rfc3339_secs(crate::time::instant::at(m)))
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pct(seg: &str) -> String {
    seg.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Static files.

/// A file of the binary, cached for a day.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn htmx() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/htmx.min.js"),
    )
}

pub(crate) async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

pub(crate) async fn app_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Login and logout.

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    error: String,
}

pub(crate) async fn login_form(State(web): WebState) -> Response {
    if !web.has_users() {
        return page_refusal(Refusal::NoUsers);
    }
    html(
        StatusCode::OK,
        &LoginPage {
            error: String::new(),
        },
    )
}

pub(crate) async fn login(
    State(web): WebState,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !web.has_users() {
        return page_refusal(Refusal::NoUsers);
    }
    let client = peer.map(|p| p.0.0.ip().to_string()).unwrap_or_default();
    let user = form
        .get("user")
        .map(|u| u.trim().to_owned())
        .unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if let Err(why) = super::same_origin(&headers) {
        web.audit(
            &user,
            Action::DashboardLogin,
            &user,
            "refused",
            json!({"why": why, "client": client}),
        );
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            &format!("Refused: {why}."),
        );
    }
    if super::throttled(&web, &client, &user) {
        web.audit(
            &user,
            Action::DashboardLogin,
            &user,
            "throttled",
            json!({"client": client}),
        );
        let mut res = html(
            StatusCode::TOO_MANY_REQUESTS,
            &LoginPage {
                error: "Too many failed logins: wait a minute and try again.".to_owned(),
            },
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return res;
    }
    if !super::verify_login(&web, &user, &password).await {
        super::count_failure(&web, &client, &user);
        web.audit(
            &user,
            Action::DashboardLogin,
            &user,
            "failed",
            json!({"client": client}),
        );
        return html(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                error: "Wrong user name or password.".to_owned(),
            },
        );
    }
    match super::open_session(&web, &user) {
        Ok(cookie) => {
            web.audit(
                &user,
                Action::DashboardLogin,
                &user,
                "ok",
                json!({"client": client}),
            );
            let mut res = see_other("/");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e),
    }
}

pub(crate) async fn logout(
    State(web): WebState,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match super::authenticate(&web, &headers) {
        Ok(w) => w,
        Err(r) => return page_refusal(r),
    };
    if let Err(r) = super::check_change(&web, &who, &headers, form.get("csrf").map(String::as_str))
    {
        return page_refusal(r);
    }
    if let Some(s) = &who.session {
        let _ = web.engine.store.end_session(s);
    }
    web.audit(
        &who.user,
        Action::DashboardLogout,
        &who.user,
        "ok",
        json!({}),
    );
    let mut res = see_other("/login");
    if let Ok(v) = HeaderValue::from_str(&super::session_cookie(&web, "", 0)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// A generic table page: most pages are a heading, a note and rows.

#[derive(Debug, Clone)]
struct Cell {
    text: String,
    href: String,
    class: String,
}

#[derive(Template)]
#[template(path = "web/table.html")]
struct TablePage {
    chrome: Chrome,
    heading: String,
    note: String,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
    /// The runs page's filter and pager.
    filter: Option<RunFilterForm>,
}

#[derive(Debug, Clone, Default)]
struct RunFilterForm {
    workflow: String,
    status: String,
    since: String,
    prev: String,
    next: String,
}

/// A column: the key in each row's JSON, its heading, and a link built from a key.
struct Col {
    key: &'static str,
    label: &'static str,
    link: Option<(&'static str, &'static str)>,
}

const fn col(key: &'static str, label: &'static str) -> Col {
    Col {
        key,
        label,
        link: None,
    }
}

const fn link(
    key: &'static str,
    label: &'static str,
    prefix: &'static str,
    by: &'static str,
) -> Col {
    Col {
        key,
        label,
        link: Some((prefix, by)),
    }
}

fn table_rows(items: &[Value], cols: &[Col]) -> Vec<Vec<Cell>> {
    items
        .iter()
        .map(|item| {
            cols.iter()
                .map(|c| {
                    let t = text(&item[c.key]);
                    Cell {
                        href: c
                            .link
                            .map(|(prefix, by)| format!("{prefix}{}", pct(&text(&item[by]))))
                            .unwrap_or_default(),
                        class: if c.key == "status" || c.key == "outcome" {
                            format!(
                                "st st-{}",
                                t.replace(|ch: char| !ch.is_ascii_alphanumeric(), "")
                            )
                        } else {
                            String::new()
                        },
                        text: t,
                    }
                })
                .collect()
        })
        .collect()
}

fn table(who: &Who, heading: &str, note: String, items: &[Value], cols: &[Col]) -> Response {
    html(
        StatusCode::OK,
        &TablePage {
            chrome: chrome(who, heading),
            heading: heading.to_owned(),
            note,
            columns: cols.iter().map(|c| c.label.to_owned()).collect(),
            rows: table_rows(items, cols),
            filter: None,
        },
    )
}

macro_rules! page_auth {
    ($web:expr, $headers:expr) => {
        match crate::web::authenticate(&$web, &$headers) {
            Ok(w) => w,
            Err(r) => return crate::web::pages::page_refusal(r),
        }
    };
}

macro_rules! api_auth {
    ($web:expr, $headers:expr) => {
        match crate::web::authenticate(&$web, &$headers) {
            Ok(w) => w,
            Err(r) => return crate::web::pages::api_refusal(r),
        }
    };
}

/// The JSON twin of a page whose data needs nothing but the dashboard (`GET /api/v1/…`).
macro_rules! api_twin {
    ($name:ident, $data:expr) => {
        pub(crate) async fn $name(
            axum::extract::State(web): crate::web::WebState,
            headers: axum::http::HeaderMap,
        ) -> axum::response::Response {
            let _who = api_auth!(web, headers);
            crate::web::pages::api(($data)(&web))
        }
    };
}

/// A page from its data: signed in (else the login page), the data built (else the error
/// page), then rendered.
fn page_of(
    web: &Web,
    headers: &HeaderMap,
    data: impl FnOnce(&Web) -> Result<Value, Fail>,
    render: impl FnOnce(&Who, &Value) -> Response,
) -> Response {
    let who = match crate::web::authenticate(web, headers) {
        Ok(w) => w,
        Err(r) => return page_refusal(r),
    };
    match data(web) {
        Ok(d) => render(&who, &d),
        Err(f) => page_fail(&who, &f),
    }
}

/// The form's CSRF token.
fn csrf(form: &HashMap<String, String>) -> Option<&str> {
    form.get("csrf").map(String::as_str)
}

/// A state-changing form: signed in, from this origin with the session's CSRF token, then
/// `act` done and the browser sent to `to` of its answer (else the refusal or error page).
fn form_action(
    web: &Web,
    headers: &HeaderMap,
    csrf: Option<&str>,
    act: impl FnOnce(&Who) -> Result<Value, Fail>,
    to: impl FnOnce(&Value) -> String,
) -> Response {
    let who = match crate::web::authenticate(web, headers) {
        Ok(w) => w,
        Err(r) => return page_refusal(r),
    };
    if let Err(r) = crate::web::check_change(web, &who, headers, csrf) {
        return page_refusal(r);
    }
    match act(&who) {
        Ok(v) => see_other(&to(&v)),
        Err(f) => page_fail(&who, &f),
    }
}

/// The API twin of a form: a token (or a session with its CSRF header from this origin), then
/// `act`'s answer as JSON with `ok` (else the refusal or error as JSON).
fn api_action(
    web: &Web,
    headers: &HeaderMap,
    ok: StatusCode,
    act: impl FnOnce(&Who) -> Result<Value, Fail>,
) -> Response {
    let who = match crate::web::authenticate(web, headers) {
        Ok(w) => w,
        Err(r) => return api_refusal(r),
    };
    if let Err(r) = crate::web::check_change(web, &who, headers, None) {
        return api_refusal(r);
    }
    match act(&who) {
        Ok(v) => (ok, axum::Json(v)).into_response(),
        Err(f) => json_error(f.status, &f.message),
    }
}

/// Where a run's form sends the browser: the run it answered with.
fn to_run(v: &Value) -> String {
    format!("/runs/{}", pct(&text(&v["id"])))
}

pub(super) mod llm;
pub(super) mod memory;
pub(super) mod triggers;

// ---------------------------------------------------------------------------------------------
// Overview.

fn data_overview(web: &Web) -> Result<Value, Fail> {
    let store = &web.engine.store;
    let day = crate::time::now_ms() - 24 * 3600 * 1000;
    let counts: serde_json::Map<String, Value> = store
        .run_counts(Some(day))?
        .into_iter()
        .map(|(s, n)| (s, json!(n)))
        .collect();
    let unfinished = store.unfinished_runs(None)?;
    let running: Vec<Value> = unfinished
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .map(run_summary)
        .collect();
    let waiting: Vec<Value> = unfinished
        .iter()
        .filter(|r| r.status == RunStatus::Waiting)
        .map(run_summary)
        .collect();
    let queued = unfinished
        .iter()
        .filter(|r| r.status == RunStatus::Queued)
        .count();
    let failed: Vec<Value> = store
        .runs_page(&RunQuery {
            status: Some(RunStatus::Failed),
            since: Some(day),
            limit: 20,
            ..RunQuery::default()
        })?
        .iter()
        .map(run_summary)
        .collect();
    let approvals = store.pending_approvals()?.len();
    let schedules: Vec<Value> = store
        .schedule_states()?
        .iter()
        .filter_map(|s| {
            let v = serde_json::to_value(ScheduleView::from(s)).ok()?;
            Some(v)
        })
        .collect();
    Ok(json!({
        "last_24h": counts,
        "running": running,
        "waiting": waiting,
        "queued": queued,
        "failed_24h": failed,
        "approvals_waiting": approvals,
        "schedules": schedules,
        "daemon": {"pid": std::process::id(), "data_dir": web.engine.dirs.home.display().to_string()},
    }))
}

#[derive(serde::Serialize)]
struct ScheduleView {
    id: String,
    last_fire: String,
    fired: u64,
    missed: u64,
    skipped: u64,
}

impl From<&crate::store::ScheduleState> for ScheduleView {
    fn from(s: &crate::store::ScheduleState) -> Self {
        Self {
            id: s.id.clone(),
            last_fire: ts(s.last_fire),
            fired: s.fired,
            missed: s.missed,
            skipped: s.skipped,
        }
    }
}

#[derive(Debug)]
struct Section {
    title: String,
    rows: Vec<Vec<Cell>>,
}

#[derive(Template)]
#[template(path = "web/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    counts: Vec<(String, String)>,
    queued: String,
    approvals: String,
    sections: Vec<Section>,
    schedules: Vec<Vec<Cell>>,
}

const RUN_COLS: &[Col] = &[
    link("id", "run", "/runs/", "id"),
    link("workflow", "workflow", "/workflows/", "workflow"),
    col("status", "status"),
    col("created_at", "created"),
    col("duration", "duration"),
    col("trigger", "trigger"),
];

pub(crate) async fn overview(State(web): WebState, headers: HeaderMap) -> Response {
    let who = page_auth!(web, headers);
    let d = match data_overview(&web) {
        Ok(d) => d,
        Err(f) => return page_fail(&who, &f),
    };
    let list = |k: &str| d[k].as_array().cloned().unwrap_or_default();
    html(
        StatusCode::OK,
        &OverviewPage {
            chrome: chrome(&who, "Overview"),
            counts: d["last_24h"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default(),
            queued: text(&d["queued"]),
            approvals: text(&d["approvals_waiting"]),
            sections: vec![
                Section {
                    title: "Running".to_owned(),
                    rows: table_rows(&list("running"), RUN_COLS),
                },
                Section {
                    title: "Waiting".to_owned(),
                    rows: table_rows(&list("waiting"), RUN_COLS),
                },
                Section {
                    title: "Failed in the last 24 h".to_owned(),
                    rows: table_rows(&list("failed_24h"), RUN_COLS),
                },
            ],
            schedules: table_rows(
                &list("schedules"),
                &[
                    col("id", "schedule"),
                    col("last_fire", "last fire"),
                    col("fired", "fired"),
                    col("missed", "missed"),
                    col("skipped", "skipped"),
                ],
            ),
        },
    )
}

api_twin!(api_overview, data_overview);

// ---------------------------------------------------------------------------------------------
// Runs.

fn run_summary(r: &RunRecord) -> Value {
    let duration = match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => {
            crate::time::duration::format(Duration::from_millis(u64::try_from(f - s).unwrap_or(0)))
        }
        _ => String::new(),
    };
    json!({
        "id": r.id,
        "workflow": r.workflow,
        "status": r.status.as_str(),
        "created_at": ts(Some(r.created_at)),
        "started_at": ts(r.started_at),
        "finished_at": ts(r.finished_at),
        "duration": duration,
        "trigger": r.trigger.get("type").map(text).unwrap_or_default(),
        "error": r.error,
    })
}

#[derive(Debug, serde::Deserialize, Default)]
pub(crate) struct RunsQuery {
    workflow: Option<String>,
    status: Option<String>,
    since: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

fn data_runs(web: &Web, q: &RunsQuery) -> Result<Value, Fail> {
    let bad = |m: String| Fail::new(StatusCode::BAD_REQUEST, m);
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<RunStatus>().map_err(bad)?),
        None => None,
    };
    let since = match q.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(crate::time::instant::ms(
            crate::time::parse_instant(s, chrono::Utc::now()).map_err(bad)?,
        )),
        None => None,
    };
    let per = q.per_page.unwrap_or(50).clamp(1, 200);
    let page = q.page.unwrap_or(1).max(1);
    let runs = web.engine.store.runs_page(&RunQuery {
        workflow: q.workflow.clone().filter(|w| !w.is_empty()),
        status,
        since,
        limit: per + 1,
        offset: (page - 1).saturating_mul(per),
    })?;
    let more = runs.len() > per as usize;
    let items: Vec<Value> = runs.iter().take(per as usize).map(run_summary).collect();
    Ok(json!({"page": page, "per_page": per, "more": more, "runs": items}))
}

pub(crate) async fn runs(
    State(web): WebState,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Response {
    let who = page_auth!(web, headers);
    let d = match data_runs(&web, &q) {
        Ok(d) => d,
        Err(f) => return page_fail(&who, &f),
    };
    let page = q.page.unwrap_or(1).max(1);
    let link_to = |p: u32| {
        format!(
            "/runs?workflow={}&status={}&since={}&page={p}",
            pct(q.workflow.as_deref().unwrap_or_default()),
            pct(q.status.as_deref().unwrap_or_default()),
            pct(q.since.as_deref().unwrap_or_default())
        )
    };
    let items = d["runs"].as_array().cloned().unwrap_or_default();
    html(
        StatusCode::OK,
        &TablePage {
            chrome: chrome(&who, "Runs"),
            heading: "Runs".to_owned(),
            note: format!("Page {page}, newest first."),
            columns: RUN_COLS.iter().map(|c| c.label.to_owned()).collect(),
            rows: table_rows(&items, RUN_COLS),
            filter: Some(RunFilterForm {
                workflow: q.workflow.clone().unwrap_or_default(),
                status: q.status.clone().unwrap_or_default(),
                since: q.since.clone().unwrap_or_default(),
                prev: if page > 1 {
                    link_to(page - 1)
                } else {
                    String::new()
                },
                next: if d["more"] == json!(true) {
                    link_to(page + 1)
                } else {
                    String::new()
                },
            }),
        },
    )
}

pub(crate) async fn api_runs(
    State(web): WebState,
    headers: HeaderMap,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let _who = api_auth!(web, headers);
    match q {
        Ok(Query(q)) => api(data_runs(&web, &q)),
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    }
}

fn step_json(s: &StepRecord) -> Value {
    json!({
        "name": s.name,
        "phase": s.phase.as_str(),
        "status": s.status.as_str(),
        "attempts": s.attempts,
        "exit_code": s.exit_code,
        "started_at": ts(s.started_at),
        "finished_at": ts(s.finished_at),
        "duration_ms": match (s.started_at, s.finished_at) { (Some(a), Some(b)) => Some(b - a), _ => None },
        "message": s.message,
        "stdout_tail": s.stdout_tail,
        "stderr_tail": s.stderr_tail,
        "decision": s.decision.map(crate::store::Decision::as_str),
        "decided_by": s.decided_by,
    })
}

fn data_run(web: &Web, id: &str) -> Result<(RunRecord, Vec<StepRecord>, Value), Fail> {
    let store = &web.engine.store;
    let run = store
        .get_run(id)?
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, format!("no run {id}")))?;
    let steps = store.steps(&run.id)?;
    let mut approvals = Vec::new();
    let now = crate::time::now_ms();
    for s in steps.iter().filter(|s| s.status == StepStatus::Waiting) {
        if let Some(a) = store.approval(&run.id, &s.name)? {
            // Decided by its votes (or deadline), the gate waits only for the run to go on.
            let decided = crate::engine::approval::resolve(&a, now).is_some();
            approvals.push(json!({
                "decided": decided,
                "step": s.name,
                "message": a.request.message,
                "approvers": a.request.approvers,
                "quorum": a.request.quorum,
                "deadline": ts(a.request.deadline),
                "input": a.request.input,
                "votes": a.votes.iter().map(|v| json!({"approver": v.approver, "decision": v.decision, "reason": v.reason})).collect::<Vec<_>>(),
            }));
        }
    }
    let mut v = run_summary(&run);
    v["params"] = run.params.clone();
    v["outputs"] = run.outputs.clone();
    v["parent_run"] = json!(run.parent_run);
    v["steps"] = steps.iter().map(step_json).collect();
    v["approvals"] = Value::Array(approvals);
    Ok((run, steps, v))
}

#[derive(Debug, Clone)]
struct StepView {
    name: String,
    status: String,
    attempts: String,
    started: String,
    duration: String,
    message: String,
    tail: String,
    stream: String,
    bar_x: String,
    bar_w: String,
    bar_y: String,
    text_y: String,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: String,
    required: bool,
    default: String,
    description: String,
    choices: Vec<String>,
}

#[derive(Debug, Clone)]
struct GateView {
    step: String,
    message: String,
    approvers: String,
    fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "web/run.html")]
struct RunPage {
    chrome: Chrome,
    id: String,
    workflow: String,
    workflow_href: String,
    status: String,
    created: String,
    error: String,
    params: String,
    finished: bool,
    /// The main steps, for "rerun from".
    step_names: Vec<String>,
    steps: Vec<StepView>,
    gates: Vec<GateView>,
    svg_height: String,
}

fn fields_of(input: &Value) -> Vec<Field> {
    input
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| Field {
                    name: text(&f["name"]),
                    kind: text(&f["type"]),
                    required: f["required"] == json!(true),
                    default: text(&f["default"]),
                    description: text(&f["description"]),
                    choices: f["choices"]
                        .as_array()
                        .map(|c| c.iter().map(text).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn run(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = page_auth!(web, headers);
    let (run, steps, v) = match data_run(&web, &id) {
        Ok(d) => d,
        Err(f) => return page_fail(&who, &f),
    };
    // The timeline: each step a bar from its start to its end (or now), on one scale.
    let now = crate::time::now_ms();
    let t0 = steps
        .iter()
        .filter_map(|s| s.started_at)
        .min()
        .unwrap_or(now);
    let t1 = steps
        .iter()
        .filter_map(|s| s.started_at.map(|a| s.finished_at.unwrap_or(now).max(a)))
        .max()
        .unwrap_or(now)
        .max(t0 + 1);
    let scale = |t: i64| 200.0 + 500.0 * ((t - t0) as f64) / ((t1 - t0) as f64);
    let mut ordered = steps.clone();
    ordered.sort_by_key(|s| (s.phase.as_str() != "main", s.seq));
    let views: Vec<StepView> = ordered
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (x, w) = match s.started_at {
                Some(a) => {
                    let b = s.finished_at.unwrap_or(now).max(a);
                    (scale(a), (scale(b) - scale(a)).max(2.0))
                }
                None => (200.0, 0.0),
            };
            let tail = if s.stderr_tail.is_empty() {
                s.stdout_tail.clone()
            } else if s.stdout_tail.is_empty() {
                s.stderr_tail.clone()
            } else {
                format!("{}\n{}", s.stdout_tail, s.stderr_tail)
            };
            StepView {
                name: s.name.clone(),
                status: s.status.as_str().to_owned(),
                attempts: s.attempts.to_string(),
                started: ts(s.started_at),
                duration: match (s.started_at, s.finished_at) {
                    (Some(a), Some(b)) => crate::time::duration::format(Duration::from_millis(
                        u64::try_from(b - a).unwrap_or(0),
                    )),
                    _ => String::new(),
                },
                message: s.message.clone().unwrap_or_default(),
                tail,
                stream: if s.status == StepStatus::Running {
                    format!("/runs/{}/steps/{}/stream", pct(&run.id), pct(&s.name))
                } else {
                    String::new()
                },
                bar_x: format!("{x:.1}"),
                bar_w: format!("{w:.1}"),
                bar_y: (i * 22 + 4).to_string(),
                text_y: (i * 22 + 18).to_string(),
            }
        })
        .collect();
    let gates = v["approvals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|g| g["decided"] != json!(true))
                .map(|g| GateView {
                    step: text(&g["step"]),
                    message: text(&g["message"]),
                    approvers: g["approvers"]
                        .as_array()
                        .map(|x| x.iter().map(text).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default(),
                    fields: fields_of(&g["input"]),
                })
                .collect()
        })
        .unwrap_or_default();
    html(
        StatusCode::OK,
        &RunPage {
            chrome: chrome(&who, &format!("Run {}", run.id)),
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            workflow_href: format!("/workflows/{}", pct(&run.workflow)),
            status: run.status.as_str().to_owned(),
            created: ts(Some(run.created_at)),
            error: run.error.clone().unwrap_or_default(),
            params: serde_json::to_string_pretty(&run.params).unwrap_or_default(),
            finished: run.status.is_finished(),
            step_names: ordered
                .iter()
                .filter(|s| s.phase.as_str() == "main")
                .map(|s| s.name.clone())
                .collect(),
            svg_height: (views.len() * 22 + 8).to_string(),
            steps: views,
            gates,
        },
    )
}

pub(crate) async fn api_run(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let _who = api_auth!(web, headers);
    api(data_run(&web, &id).map(|(_, _, v)| v))
}

fn do_cancel(web: &Web, who: &Who, id: &str) -> Result<Value, Fail> {
    let run = web
        .engine
        .store
        .get_run(id)?
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, format!("no run {id}")))?;
    let status = web.engine.cancel(&run, &who.actor())?;
    Ok(json!({"id": run.id, "status": status.as_str()}))
}

pub(crate) async fn cancel(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    form_action(
        &web,
        &headers,
        csrf(&form),
        |who| do_cancel(&web, who, &id),
        to_run,
    )
}

pub(crate) async fn api_cancel(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    api_action(&web, &headers, StatusCode::OK, |who| {
        do_cancel(&web, who, &id)
    })
}

/// A new run of the same workflow and params: all of it, or (`from`) that step and what
/// depends on it, the steps before keeping their results.
fn do_rerun(web: &Web, who: &Who, id: &str, from: Option<&str>) -> Result<Value, Fail> {
    let old = web
        .engine
        .store
        .get_run(id)?
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, format!("no run {id}")))?;
    let from = from.map(str::trim).filter(|f| !f.is_empty());
    let run = web.engine.rerun(&old, from, false)?;
    web.wake(&run.id);
    web.audit(
        &who.user,
        Action::DashboardRunStart,
        &run.id,
        "ok",
        json!({"workflow": run.workflow, "rerun_of": old.id, "from": from}),
    );
    Ok(
        json!({"id": run.id, "workflow": run.workflow, "status": run.status.as_str(), "rerun_of": old.id}),
    )
}

pub(crate) async fn rerun(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let from = form.get("from").map(String::as_str);
    form_action(
        &web,
        &headers,
        csrf(&form),
        |who| do_rerun(&web, who, &id, from),
        to_run,
    )
}

pub(crate) async fn api_rerun(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    api_action(&web, &headers, StatusCode::CREATED, |who| {
        let body = json_body(&body)?;
        let from = body.get("from").and_then(Value::as_str);
        do_rerun(&web, who, &id, from)
    })
}

/// A vote on a waiting gate: `step`, `decision` (approve or reject), `reason`, and the gate's
/// input fields as `input.<name>`.
fn do_decide(
    web: &Web,
    who: &Who,
    id: &str,
    form: &HashMap<String, String>,
) -> Result<Value, Fail> {
    let run = web
        .engine
        .store
        .get_run(id)?
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, format!("no run {id}")))?;
    let step = form.get("step").cloned().unwrap_or_default();
    let approve = match form.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("reject") => false,
        _ => {
            return Err(Fail::new(
                StatusCode::BAD_REQUEST,
                "decision must be `approve` or `reject`",
            ));
        }
    };
    let reason = form
        .get("reason")
        .map(String::as_str)
        .filter(|r| !r.is_empty());
    let mut input: Vec<(String, String)> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("input.")?.to_owned(), v.clone())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    input.sort();
    let result = web
        .engine
        .vote(&run, &step, &who.actor(), approve, reason, &input)?;
    let crate::engine::approval::VoteResult::Recorded {
        decided,
        approvals,
        quorum,
    } = result;
    Ok(
        json!({"id": run.id, "step": step, "decided": decided.map(|d| format!("{d:?}").to_lowercase()), "approvals": approvals, "quorum": quorum}),
    )
}

pub(crate) async fn decide(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    form_action(
        &web,
        &headers,
        csrf(&form),
        |who| do_decide(&web, who, &id, &form),
        to_run,
    )
}

pub(crate) async fn api_decide(
    State(web): WebState,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    api_action(&web, &headers, StatusCode::OK, |who| {
        let body = json_body(&body)?;
        let mut form: HashMap<String, String> = HashMap::new();
        for k in ["step", "decision", "reason"] {
            if let Some(v) = body.get(k) {
                form.insert(k.to_owned(), text(v));
            }
        }
        if let Some(m) = body.get("input").and_then(Value::as_object) {
            for (k, v) in m {
                form.insert(format!("input.{k}"), text(v));
            }
        }
        do_decide(&web, who, &id, &form)
    })
}

/// How often a followed log file is looked at (one `stat`): the longest a new line waits
/// before it is sent.
const FOLLOW_POLL: Duration = Duration::from_millis(10);
/// How often a followed step's state is read from the store (to know when to send `end`).
const FOLLOW_STATE: Duration = Duration::from_millis(250);

/// What a log stream knows between two events.
struct Follow {
    web: std::sync::Arc<Web>,
    run: String,
    step: String,
    source: LogSource,
    /// When the step's state was last read, and whether it had finished then.
    checked: Option<(tokio::time::Instant, bool)>,
    done: bool,
}

impl Follow {
    /// Whether the step has finished, read from the store at most every [`FOLLOW_STATE`], on a
    /// blocking thread: the store's connection may be busy with the daemon's writes, and the
    /// listener's thread must not wait for it.
    async fn finished(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if let Some((at, finished)) = self.checked
            && (finished || now.duration_since(at) < FOLLOW_STATE)
        {
            return finished;
        }
        let (web, run, step) = (self.web.clone(), self.run.clone(), self.step.clone());
        let finished = tokio::task::spawn_blocking(move || {
            web.engine
                .store
                .steps(&run)
                .ok()
                .and_then(|s| s.into_iter().find(|s| s.name == step))
                .is_none_or(|s| s.status.is_finished())
        })
        .await
        .unwrap_or(true);
        self.checked = Some((now, finished));
        finished
    }
}

/// A running step's log as Server-Sent Events: each new piece (whole lines, masked) as a `log`
/// event, and `end` when the step has finished and everything is sent. Read from the step's log
/// file, which must be under the data directory; on a shared store (PostgreSQL), a step executed
/// on another machine (no such file here) is read from the copy kept in the store. The log is
/// looked at every [`FOLLOW_POLL`] (a line reaches the client within that, measured by
/// `claw bench dashboard`); the step's state far less often.
pub(crate) async fn log_stream(
    State(web): WebState,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    let _who = page_auth!(web, headers);
    let Ok(Some(run)) = web.engine.store.get_run(&id) else {
        return message(StatusCode::NOT_FOUND, "Not found", "no such run");
    };
    let source = match step_log(&web, &run.id, &step) {
        Some(path) => LogSource::File { path, offset: 0 },
        None if web.engine.store.shared() && has_log(&web, &run.id, &step) => LogSource::Store {
            after: 0,
            partial: String::new(),
        },
        None => return message(StatusCode::NOT_FOUND, "Not found", "this step has no log"),
    };
    let state = Follow {
        web: web.clone(),
        run: run.id,
        step,
        source,
        checked: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            // The state before the read: a step that had finished before it has nothing more.
            let finished = f.finished().await;
            let chunk = f.source.read(&f.web, &f.run, &f.step, finished);
            if !chunk.is_empty() {
                let masked = crate::redact::global()
                    .redact(chunk.trim_end_matches('\n'))
                    .into_owned();
                let ev = Event::default().event("log").data(masked);
                return Some((Ok::<_, Infallible>(ev), f));
            }
            if finished {
                f.done = true;
                return Some((Ok(Event::default().event("end").data("")), f));
            }
            tokio::time::sleep(f.source.poll_every()).await;
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Where a streamed step log is read from, and how far.
enum LogSource {
    File {
        path: std::path::PathBuf,
        offset: u64,
    },
    /// The copy in a shared store: the last chunk read, and the end of a line not yet whole.
    Store { after: i64, partial: String },
}

impl LogSource {
    /// How long to wait between two looks: a file costs a `stat`; the store's copy is a query,
    /// and only grows every half second.
    fn poll_every(&self) -> Duration {
        match self {
            Self::File { .. } => FOLLOW_POLL,
            Self::Store { .. } => FOLLOW_STATE,
        }
    }

    /// Whole lines appended since the last read (`finished`: the step has ended, so a last line
    /// without its newline is whole).
    fn read(&mut self, web: &Web, run: &str, step: &str, finished: bool) -> String {
        match self {
            Self::File { path, offset } => read_from(path, offset),
            Self::Store { after, partial } => {
                let chunks = web
                    .engine
                    .store
                    .step_log_after(run, step, *after)
                    .unwrap_or_default();
                for c in chunks {
                    *after = c.seq;
                    partial.push_str(&c.text);
                }
                let whole = if finished {
                    partial.len()
                } else {
                    partial.rfind('\n').map_or(0, |i| i + 1)
                };
                partial.drain(..whole).collect()
            }
        }
    }
}

/// Whether the run has the step and the step has (or will have) a log.
fn has_log(web: &Web, run: &str, step: &str) -> bool {
    web.engine
        .store
        .steps(run)
        .is_ok_and(|s| s.iter().any(|s| s.name == step && s.log_path.is_some()))
}

/// The step's log file, if it lies inside the data directory.
fn step_log(web: &Web, run: &str, step: &str) -> Option<std::path::PathBuf> {
    let rec = web
        .engine
        .store
        .steps(run)
        .ok()?
        .into_iter()
        .find(|s| s.name == step)?;
    // The file may not exist yet (nothing written so far): its folder must.
    let given = std::path::PathBuf::from(rec.log_path?);
    let dir = std::fs::canonicalize(given.parent()?).ok()?;
    let path = dir.join(given.file_name()?);
    let home = std::fs::canonicalize(&web.engine.dirs.home).ok()?;
    let inside = path.starts_with(&home)
        && std::fs::symlink_metadata(&path).map_or(true, |m| m.file_type().is_file());
    inside.then_some(path)
}

/// What was appended to `path` since `offset` (whole lines only, up to 64 KiB).
fn read_from(path: &std::path::Path, offset: &mut u64) -> String {
    use std::io::{Read as _, Seek as _};
    // Most looks find nothing new: a `stat` answers them without opening the file.
    if std::fs::metadata(path).is_ok_and(|m| m.len() == *offset) {
        return String::new();
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
    }
    if f.seek(std::io::SeekFrom::Start(*offset)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(64 * 1024).read_to_end(&mut buf);
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        return String::new();
    };
    buf.truncate(last_nl + 1);
    *offset += buf.len() as u64;
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Workflows.

fn data_workflows(web: &Web) -> Value {
    let cat = crate::workflow::catalogue::Catalogue::new(&web.engine.dirs);
    let items: Vec<Value> = cat
        .files()
        .iter()
        .map(|p| match crate::workflow::load::load_file(p) {
            Ok(wf) => json!({
                "name": wf.name,
                "description": wf.description,
                "file": p.display().to_string(),
                "steps": wf.steps.len(),
                "params": wf.params.len(),
                "valid": true,
                "problems": "",
            }),
            Err(errs) => json!({
                "name": p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                "description": "",
                "file": p.display().to_string(),
                "steps": Value::Null,
                "params": Value::Null,
                "valid": false,
                "problems": errs.render(),
            }),
        })
        .collect();
    json!({"workflows": items})
}

pub(crate) async fn workflows(State(web): WebState, headers: HeaderMap) -> Response {
    let who = page_auth!(web, headers);
    let d = data_workflows(&web);
    let items = d["workflows"].as_array().cloned().unwrap_or_default();
    let bad = items.iter().filter(|w| w["valid"] == json!(false)).count();
    table(
        &who,
        "Workflows",
        format!("{} workflow file(s), {bad} with problems.", items.len()),
        &items,
        &[
            link("name", "name", "/workflows/", "name"),
            col("description", "description"),
            col("steps", "steps"),
            col("params", "params"),
            col("problems", "problems"),
        ],
    )
}

api_twin!(api_workflows, |w| Ok(data_workflows(w)));

fn load_workflow(web: &Web, name: &str) -> Result<crate::workflow::Workflow, Fail> {
    // Names only: a path would reach files outside the catalogue.
    if crate::workflow::catalogue::is_path(name) {
        return Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("no workflow `{name}`"),
        ));
    }
    Ok(crate::triggers::launch::find_workflow(
        &web.engine.dirs,
        name,
    )?)
}

fn param_json(p: &crate::params::ParamSpec) -> Value {
    json!({
        "name": p.name,
        "type": p.kind.as_str(),
        "required": p.required,
        "default": p.default,
        "choices": p.choices,
        "description": p.description,
    })
}

fn data_workflow(web: &Web, name: &str) -> Result<(crate::workflow::Workflow, Value), Fail> {
    let wf = load_workflow(web, name)?;
    let steps: Vec<Value> = wf
        .steps
        .iter()
        .map(|s| json!({"name": s.name, "needs": s.needs.iter().filter_map(|&i| wf.steps.get(i)).map(|d| d.name.clone()).collect::<Vec<_>>()}))
        .collect();
    let v = json!({
        "name": wf.name,
        "description": wf.description,
        "file": wf.path.display().to_string(),
        "params": wf.params.iter().map(param_json).collect::<Vec<_>>(),
        "steps": steps,
    });
    Ok((wf, v))
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    x: String,
    y: String,
    tx: String,
    ty: String,
}

#[derive(Debug, Clone)]
struct Edge {
    x1: String,
    y1: String,
    x2: String,
    y2: String,
}

#[derive(Template)]
#[template(path = "web/workflow.html")]
struct WorkflowPage {
    chrome: Chrome,
    name: String,
    description: String,
    file: String,
    fields: Vec<Field>,
    action: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    width: String,
    height: String,
}

/// The DAG laid out in columns by depth (the longest chain of `needs` before a step).
fn layout(wf: &crate::workflow::Workflow) -> (Vec<Node>, Vec<Edge>, usize, usize) {
    let n = wf.steps.len();
    let mut depth = vec![0usize; n];
    // Steps' needs point to earlier indexes or later ones; iterate to a fixpoint (bounded).
    for _ in 0..n {
        let mut changed = false;
        for s in &wf.steps {
            let d = s
                .needs
                .iter()
                .filter_map(|&i| depth.get(i))
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            if d > depth[s.index] && d < n {
                depth[s.index] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows = vec![0usize; n + 1];
    let mut pos = vec![(0usize, 0usize); n];
    for s in &wf.steps {
        let d = depth[s.index];
        pos[s.index] = (d, rows[d]);
        rows[d] += 1;
    }
    let (w, h) = (180, 44);
    let xy = |i: usize| (pos[i].0 * w + 10, pos[i].1 * h + 10);
    let nodes = wf
        .steps
        .iter()
        .map(|s| {
            let (x, y) = xy(s.index);
            Node {
                name: s.name.clone(),
                x: x.to_string(),
                y: y.to_string(),
                tx: (x + 8).to_string(),
                ty: (y + 20).to_string(),
            }
        })
        .collect();
    let mut edges = Vec::new();
    for s in &wf.steps {
        for &d in &s.needs {
            if d < n {
                let (x1, y1) = xy(d);
                let (x2, y2) = xy(s.index);
                edges.push(Edge {
                    x1: (x1 + 150).to_string(),
                    y1: (y1 + 15).to_string(),
                    x2: x2.to_string(),
                    y2: (y2 + 15).to_string(),
                });
            }
        }
    }
    let cols = depth.iter().max().map_or(1, |d| d + 1);
    let tallest = rows.iter().max().copied().unwrap_or(1).max(1);
    (nodes, edges, cols * w + 20, tallest * h + 20)
}

pub(crate) async fn workflow(
    State(web): WebState,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let who = page_auth!(web, headers);
    let (wf, v) = match data_workflow(&web, &name) {
        Ok(d) => d,
        Err(f) => return page_fail(&who, &f),
    };
    let (nodes, edges, width, height) = layout(&wf);
    html(
        StatusCode::OK,
        &WorkflowPage {
            chrome: chrome(&who, &wf.name),
            name: wf.name.clone(),
            description: wf.description.clone(),
            file: text(&v["file"]),
            fields: fields_of(&v["params"]),
            action: format!("/workflows/{}/run", pct(&wf.name)),
            nodes,
            edges,
            width: width.to_string(),
            height: height.to_string(),
        },
    )
}

pub(crate) async fn api_workflow(
    State(web): WebState,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let _who = api_auth!(web, headers);
    api(data_workflow(&web, &name).map(|(_, v)| v))
}

fn do_start(web: &Web, who: &Who, name: &str, given: &[(String, String)]) -> Result<Value, Fail> {
    let wf = load_workflow(web, name)?;
    let launcher =
        crate::triggers::launch::Launcher::new(web.engine.clone(), web.execution.clone());
    let started = launcher.start(&wf, given, json!({"type": "dashboard", "user": who.user}))?;
    web.audit(
        &who.user,
        Action::DashboardRunStart,
        &started.run.id,
        "ok",
        json!({"workflow": wf.name, "params": given.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()}),
    );
    Ok(json!({"id": started.run.id, "workflow": wf.name, "status": started.run.status.as_str()}))
}

pub(crate) async fn start(
    State(web): WebState,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut given: Vec<(String, String)> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("param.")?.to_owned(), v.clone())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    given.sort();
    form_action(
        &web,
        &headers,
        csrf(&form),
        |who| do_start(&web, who, &name, &given),
        to_run,
    )
}

pub(crate) async fn api_start(
    State(web): WebState,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    api_action(&web, &headers, StatusCode::CREATED, |who| {
        let body = json_body(&body)?;
        let mut given: Vec<(String, String)> = body
            .get("params")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default();
        given.sort();
        do_start(&web, who, &name, &given)
    })
}

// ---------------------------------------------------------------------------------------------
// Approvals, audit, vault, outbox.

fn data_approvals(web: &Web) -> Result<Value, Fail> {
    let items: Vec<Value> = web
        .engine
        .store
        .pending_approvals()?
        .iter()
        .map(|a| {
            json!({
                "run_id": a.request.run_id,
                "step": a.request.step,
                "message": a.request.message,
                "approvers": if a.request.approvers.is_empty() { "anyone".to_owned() } else { a.request.approvers.join(", ") },
                "quorum": a.request.quorum,
                "votes": a.votes.len(),
                "requested_at": ts(Some(a.request.requested_at)),
                "deadline": ts(a.request.deadline),
            })
        })
        .collect();
    Ok(json!({"approvals": items}))
}

pub(crate) async fn approvals(State(web): WebState, headers: HeaderMap) -> Response {
    page_of(&web, &headers, data_approvals, |who, d| {
        let items = d["approvals"].as_array().cloned().unwrap_or_default();
        table(
            who,
            "Approvals",
            format!("{} gate(s) waiting. Open a run to decide.", items.len()),
            &items,
            &[
                link("run_id", "run", "/runs/", "run_id"),
                col("step", "step"),
                col("message", "message"),
                col("approvers", "who may decide"),
                col("votes", "votes"),
                col("quorum", "quorum"),
                col("deadline", "deadline"),
            ],
        )
    })
}

api_twin!(api_approvals, data_approvals);

#[derive(Debug, serde::Deserialize, Default)]
pub(crate) struct AuditQuery {
    q: Option<String>,
    verify: Option<String>,
    n: Option<usize>,
}

fn data_audit(web: &Web, q: &AuditQuery) -> Result<Value, Fail> {
    let log = &web.engine.audit;
    let n = q.n.unwrap_or(100).clamp(1, 1000);
    let lines = match q.q.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => log
            .search(&crate::audit::Query {
                text: Some(t.to_owned()),
                action: None,
                actor: None,
                since: None,
                until: None,
            })
            .map_err(Fail::internal)?,
        None => log.tail(n).map_err(Fail::internal)?,
    };
    let entries: Vec<Value> = lines
        .iter()
        .rev()
        .take(n)
        .map(|l| l.value().clone())
        .collect();
    let mut v = json!({"entries": entries});
    if q.verify.is_some() {
        let r = log.verify().map_err(Fail::internal)?;
        v["verify"] = json!({
            "entries": r.entries,
            "legacy": r.legacy,
            "ok": r.problem.is_none(),
            "problem": r.problem.map(|p| format!("line {}: {}", p.line, p.message)),
        });
    }
    Ok(v)
}

pub(crate) async fn audit(
    State(web): WebState,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let who = page_auth!(web, headers);
    match data_audit(&web, &q) {
        Ok(d) => {
            let items: Vec<Value> = d["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut e| {
                    e["detail_text"] =
                        json!(e.get("detail").map(Value::to_string).unwrap_or_default());
                    e
                })
                .collect();
            let note = match d.get("verify") {
                Some(v) if v["ok"] == json!(true) => format!(
                    "verify: the chain of {} entries is intact.",
                    text(&v["entries"])
                ),
                Some(v) => format!("verify: BROKEN: {}", text(&v["problem"])),
                None => "Newest first. Add ?verify=1 to check the hash chain; ?q=TEXT searches."
                    .to_owned(),
            };
            table(
                &who,
                "Audit log",
                note,
                &items,
                &[
                    col("ts", "time"),
                    col("actor", "actor"),
                    col("action", "action"),
                    col("target", "target"),
                    col("outcome", "outcome"),
                    col("detail_text", "detail"),
                ],
            )
        }
        Err(f) => page_fail(&who, &f),
    }
}

pub(crate) async fn api_audit(
    State(web): WebState,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let _who = api_auth!(web, headers);
    match q {
        Ok(Query(q)) => api(data_audit(&web, &q)),
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    }
}

fn data_vault(web: &Web) -> Result<Value, Fail> {
    // Never a passphrase prompt: the daemon's one thread would wait on a terminal.
    let v = crate::vault::Vault::new(&web.engine.dirs.home)
        .with_unlock(crate::vault::passphrase::Unlock::EnvOnly);
    if !v.vault_path().exists() {
        return Ok(json!({"initialized": false, "keys": []}));
    }
    let keys = v.list().map_err(Fail::internal)?;
    Ok(
        json!({"initialized": true, "keys": keys.iter().map(|k| json!({"name": k})).collect::<Vec<_>>()}),
    )
}

pub(crate) async fn vault(State(web): WebState, headers: HeaderMap) -> Response {
    page_of(&web, &headers, data_vault, |who, d| {
        let items = d["keys"].as_array().cloned().unwrap_or_default();
        let note = if d["initialized"] == json!(true) {
            format!(
                "{} secret(s). Names only: values never leave the vault here.",
                items.len()
            )
        } else {
            "No vault yet: `claw vault init`.".to_owned()
        };
        table(who, "Vault", note, &items, &[col("name", "name")])
    })
}

api_twin!(api_vault, data_vault);

fn data_outbox(web: &Web) -> Result<Value, Fail> {
    let items: Vec<Value> = web
        .engine
        .store
        .list_messages(false, 100)?
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "channel": m.channel,
                "target": m.target,
                "status": m.status,
                "attempts": m.attempts,
                "source": m.source,
                "created_at": ts(Some(m.created_at)),
                "last_error": m.last_error,
            })
        })
        .collect();
    Ok(json!({"messages": items}))
}

pub(crate) async fn outbox(State(web): WebState, headers: HeaderMap) -> Response {
    page_of(&web, &headers, data_outbox, |who, d| {
        let items = d["messages"].as_array().cloned().unwrap_or_default();
        table(
            who,
            "Messages",
            "The outbox, newest first (`claw msg outbox`).".to_owned(),
            &items,
            &[
                col("id", "id"),
                col("channel", "channel"),
                col("target", "target"),
                col("status", "status"),
                col("attempts", "attempts"),
                col("source", "source"),
                col("created_at", "queued"),
                col("last_error", "last error"),
            ],
        )
    })
}

api_twin!(api_outbox, data_outbox);

/// Prometheus text format: runs by status, queue depth, approvals waiting.
pub(crate) async fn metrics(State(web): WebState, headers: HeaderMap) -> Response {
    let _who = api_auth!(web, headers);
    let store = &web.engine.store;
    let mut out = String::new();
    out.push_str("# HELP claw_runs Runs in the store by status.\n# TYPE claw_runs gauge\n");
    match store.run_counts(None) {
        Ok(counts) => {
            for (s, n) in counts {
                out.push_str(&format!("claw_runs{{status=\"{s}\"}} {n}\n"));
            }
        }
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let queued = store
        .unfinished_runs(None)
        .map(|r| r.iter().filter(|r| r.status == RunStatus::Queued).count())
        .unwrap_or(0);
    out.push_str(&format!(
        "# HELP claw_queue_depth Runs queued, not yet started.\n# TYPE claw_queue_depth gauge\nclaw_queue_depth {queued}\n"
    ));
    let waiting = store.pending_approvals().map(|a| a.len()).unwrap_or(0);
    out.push_str(&format!(
        "# HELP claw_approvals_waiting Approval gates waiting for a decision.\n# TYPE claw_approvals_waiting gauge\nclaw_approvals_waiting {waiting}\n"
    ));
    if let Err(e) = more_metrics(store.as_ref(), &mut out) {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The upper bounds of the step duration histogram, in seconds.
const STEP_BUCKETS_S: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0];

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Step durations, schedule fires (fired, missed, skipped) and runs started per trigger (the
/// webhook deliveries among them).
fn more_metrics(
    store: &dyn crate::store::Store,
    out: &mut String,
) -> Result<(), crate::store::StoreError> {
    use std::fmt::Write as _;
    #[allow(clippy::cast_possible_truncation, reason = "bounds are small whole ms")]
    let bounds: Vec<i64> = STEP_BUCKETS_S
        .iter()
        .map(|s| (s * 1000.0).round() as i64)
        .collect();
    let d = store.step_durations(&bounds)?;
    out.push_str("# HELP claw_step_duration_seconds How long finished steps took.\n# TYPE claw_step_duration_seconds histogram\n");
    for (le, n) in STEP_BUCKETS_S.iter().zip(&d.buckets) {
        let _ = writeln!(out, "claw_step_duration_seconds_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "claw_step_duration_seconds_bucket{{le=\"+Inf\"}} {c}\nclaw_step_duration_seconds_sum {s}\nclaw_step_duration_seconds_count {c}",
        c = d.count,
        s = d.sum_ms as f64 / 1000.0
    );
    out.push_str("# HELP claw_schedule_fires_total Fires per schedule: run, missed (claw was down) or skipped (overlap).\n# TYPE claw_schedule_fires_total counter\n");
    for s in store.schedule_states()? {
        for (outcome, n) in [
            ("fired", s.fired),
            ("missed", s.missed),
            ("skipped", s.skipped),
        ] {
            let _ = writeln!(
                out,
                "claw_schedule_fires_total{{schedule=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(&s.id)
            );
        }
    }
    let counts = store.trigger_counts()?;
    out.push_str("# HELP claw_runs_started_total Runs in the store by what started them.\n# TYPE claw_runs_started_total counter\n");
    let mut by_type: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (kind, _, n) in &counts {
        *by_type.entry(kind.as_str()).or_default() += n;
    }
    for (kind, n) in by_type {
        let _ = writeln!(
            out,
            "claw_runs_started_total{{trigger=\"{}\"}} {n}",
            label(kind)
        );
    }
    out.push_str("# HELP claw_messages Outbox messages (pieces) per channel: pending, sent or dead (failed for good).\n# TYPE claw_messages gauge\n");
    for (channel, status, n) in store.message_counts()? {
        let _ = writeln!(
            out,
            "claw_messages{{channel=\"{}\",status=\"{}\"}} {n}",
            label(&channel),
            label(&status)
        );
    }
    out.push_str("# HELP claw_webhook_deliveries_total Webhook deliveries that started a run, per hook.\n# TYPE claw_webhook_deliveries_total counter\n");
    for (_, hook, n) in counts.iter().filter(|(k, _, _)| k == "webhook") {
        let _ = writeln!(
            out,
            "claw_webhook_deliveries_total{{hook=\"{}\"}} {n}",
            label(hook)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Skills and SSH hosts.

fn data_skills(web: &Web) -> Value {
    let cat = crate::skills::discover(&web.engine.dirs);
    let skills: Vec<Value> = cat
        .skills
        .iter()
        .map(|s| {
            json!({
                "name": s.manifest.name,
                "version": s.manifest.version,
                "description": s.manifest.description,
                "author": s.manifest.author,
                "manifest": s.manifest_path.display().to_string(),
            })
        })
        .collect();
    let broken: Vec<Value> = cat.broken.iter().map(|e| json!(e.render())).collect();
    json!({"skills": skills, "broken": broken})
}

pub(crate) async fn skills(State(web): WebState, headers: HeaderMap) -> Response {
    let who = page_auth!(web, headers);
    let d = data_skills(&web);
    let items = d["skills"].as_array().cloned().unwrap_or_default();
    let broken: Vec<String> = d["broken"]
        .as_array()
        .map(|b| b.iter().map(text).collect())
        .unwrap_or_default();
    let note = if broken.is_empty() {
        format!("{} skill(s).", items.len())
    } else {
        format!(
            "{} skill(s); manifests with problems:\n{}",
            items.len(),
            broken.join("\n")
        )
    };
    table(
        &who,
        "Skills",
        note,
        &items,
        &[
            col("name", "name"),
            col("version", "version"),
            col("description", "description"),
            col("author", "author"),
        ],
    )
}

api_twin!(api_skills, |w| Ok(data_skills(w)));

fn data_hosts(web: &Web) -> Result<Value, Fail> {
    let dirs = &web.engine.dirs;
    let reg = crate::ssh::hosts::Registry::find(&dirs.root, &dirs.home)
        .map_err(|e| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, e.render()))?;
    let hosts: Vec<Value> = reg
        .hosts
        .iter()
        .map(|h| {
            let mut v = h.json();
            v["groups_text"] = json!(h.groups.join(", "));
            v
        })
        .collect();
    Ok(json!({"file": reg.path.map(|p| p.display().to_string()), "hosts": hosts}))
}

pub(crate) async fn hosts(State(web): WebState, headers: HeaderMap) -> Response {
    page_of(&web, &headers, data_hosts, |who, d| {
        let items = d["hosts"].as_array().cloned().unwrap_or_default();
        let note = match d["file"].as_str() {
            Some(f) => format!("{} host(s) in {f}.", items.len()),
            None => "No hosts.yaml.".to_owned(),
        };
        table(
            who,
            "SSH hosts",
            note,
            &items,
            &[
                col("alias", "alias"),
                col("hostname", "hostname"),
                col("port", "port"),
                col("username", "user"),
                col("auth", "auth"),
                col("groups_text", "groups"),
            ],
        )
    })
}

api_twin!(api_hosts, data_hosts);
