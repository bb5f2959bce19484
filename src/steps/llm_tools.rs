//! The tools of an llm step (`tools:`): what the model may call, how each call is checked
//! (arguments against the tool's schema, the command policies, the tool's `approve:` mode) and
//! run, and the journal that lets a resumed step replay finished calls instead of running them
//! again.
//!
//! ```yaml
//! tools:
//!   - skill: disk-report             # a skill from skills/ (its `args:` are the parameters)
//!   - workflow: restart-service      # a workflow, run as a child run of this run
//!     approve: always                # off (default) | on_miss | always
//!   - name: uptime                   # an HTTP endpoint declared here
//!     description: Uptime of a host
//!     http: {url: "http://127.0.0.1:9100/uptime", method: GET}
//!     parameters: {type: object, properties: {host: {type: string}}}
//! max_turns: 8                       # replies of the model, at most (default 10)
//! ```
//!
//! A call runs only after: its arguments fit the tool's schema (else the model is told what is
//! wrong), the command policies allow it (`policy::gate`, place `llm tool`: a `deny` refuses it, a
//! `require_approval` makes it wait for a person), and its `approve:` mode is satisfied
//! (`always`: every call waits for a person; `on_miss`: only a call not approved before with the
//! same arguments). A wait is an approval request of the run named `STEP#tool-T.I` (reply T, call
//! I), decided by `claw run approve RUN` like any gate; a rejection is told to the model. Every
//! call is audited (`llm.tool_call`) and kept in the step's outputs (`tool_calls`).
//!
//! The journal (`<step log>.turns.jsonl`, beside the step's log, written and synced before the
//! loop goes on) holds every reply of the model and every tool result: an attempt that finds it
//! (the run was killed and resumed) rebuilds the conversation from it, runs only the calls that
//! had not finished, and asks the model only for what is left.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{LoadCx, Runtime, StepInput, StepOutcome, WaitEnd, approval};
use crate::config::Dirs;
use crate::llm::{Message, ToolCall, ToolDef, ToolResult, Usage};
use crate::policy::{Gate, Subject};
use crate::yaml::Node;

/// The most replies of the model a step asks for when it does not say.
pub const DEFAULT_MAX_TURNS: u32 = 10;
/// The most characters of a tool's result the model is given (the end is cut).
const RESULT_CHARS: usize = 16_000;
/// How long an HTTP tool may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// When a call waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approve {
    Off,
    OnMiss,
    Always,
}

impl Approve {
    const NAMES: &'static [&'static str] = &["off", "on_miss", "always"];

    fn parse(s: &str) -> Self {
        match s {
            "always" => Self::Always,
            "on_miss" => Self::OnMiss,
            _ => Self::Off,
        }
    }
}

/// What a tool runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolKind {
    Skill(String),
    Workflow(String),
    Http {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
    },
}

/// A tool as the step declares it.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    pub description: Option<String>,
    pub kind: ToolKind,
    pub approve: Approve,
    /// The JSON Schema of its arguments, when the step gives one.
    pub parameters: Option<Value>,
}

const TOOL_KEYS: &[&str] = &[
    "skill",
    "workflow",
    "http",
    "name",
    "description",
    "approve",
    "parameters",
];

/// A name the providers accept for a tool (`^[a-zA-Z0-9_-]{1,64}$`).
fn tool_name(raw: &str) -> String {
    let mut n: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if n.is_empty() {
        n.push_str("tool");
    }
    n
}

/// Reads `tools:` (a list of tool entries).
pub fn load(cx: &mut LoadCx<'_>, node: &Node) -> Vec<ToolSpec> {
    let crate::yaml::Value::Seq(items) = &node.value else {
        cx.err(
            node.pos,
            "`tools` must be a list of tools (skill:, workflow: or http:)",
        );
        return Vec::new();
    };
    let mut out: Vec<ToolSpec> = Vec::new();
    for item in items {
        let entries = cx.entries(item, TOOL_KEYS, "a tool");
        let get = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, n)| *n);
        let kinds: Vec<&str> = ["skill", "workflow", "http"]
            .into_iter()
            .filter(|k| get(k).is_some())
            .collect();
        if kinds.len() != 1 {
            cx.err(
                item.pos,
                format!(
                    "a tool needs exactly one of `skill:`, `workflow:` or `http:` (found {})",
                    if kinds.is_empty() {
                        "none".to_owned()
                    } else {
                        kinds.join(", ")
                    }
                ),
            );
            continue;
        }
        let literal = |cx: &mut LoadCx<'_>, n: &Node, what: &str| -> Option<String> {
            let s = cx.string(n, what)?;
            if s.contains("${{") {
                cx.err(
                    n.pos,
                    format!("the {what} of a tool must be named literally, not with an expression"),
                );
                return None;
            }
            Some(s.trim().to_owned())
        };
        let kind = match kinds[0] {
            "skill" => {
                let Some(n) = get("skill") else { continue };
                let Some(s) = literal(cx, n, "skill") else {
                    continue;
                };
                if !crate::skills::manifest::valid_name(&s) {
                    cx.err(n.pos, format!("`{s}` is not a skill name"));
                    continue;
                }
                ToolKind::Skill(s)
            }
            "workflow" => {
                let Some(n) = get("workflow") else { continue };
                let Some(s) = literal(cx, n, "workflow") else {
                    continue;
                };
                ToolKind::Workflow(s)
            }
            _ => {
                let Some(n) = get("http") else { continue };
                let (mut url, mut method, mut headers) = (None, "GET".to_owned(), Vec::new());
                for (k, v) in cx.entries(n, &["url", "method", "headers"], "`http` of a tool") {
                    match k {
                        "url" => url = cx.template_string(v, "url"),
                        "method" => {
                            if let Some(m) =
                                cx.choice(v, "method", &["GET", "POST", "PUT", "PATCH", "DELETE"])
                            {
                                method = m;
                            }
                        }
                        _ => {
                            for (hk, hv) in cx.entries(v, &[], "`headers`") {
                                if let Some(text) = cx.template_string(hv, hk) {
                                    headers.push((hk.to_owned(), text));
                                }
                            }
                        }
                    }
                }
                let Some(url) = url else {
                    cx.err(n.pos, "an http tool needs `url:`");
                    continue;
                };
                if get("name").is_none() {
                    cx.err(
                        item.pos,
                        "an http tool needs `name:` (what the model calls it)",
                    );
                    continue;
                }
                ToolKind::Http {
                    url,
                    method,
                    headers,
                }
            }
        };
        let name = match get("name") {
            Some(n) => match cx.string(n, "name") {
                Some(s) if tool_name(&s) == s => s,
                Some(s) => {
                    cx.err(
                        n.pos,
                        format!("tool name `{s}` may hold only letters, digits, `_` and `-` (64 at most)"),
                    );
                    continue;
                }
                None => continue,
            },
            None => match &kind {
                ToolKind::Skill(s) | ToolKind::Workflow(s) => tool_name(
                    Path::new(s)
                        .file_stem()
                        .and_then(|x| x.to_str())
                        .unwrap_or(s),
                ),
                ToolKind::Http { .. } => continue,
            },
        };
        if out.iter().any(|t| t.name == name) {
            cx.err(
                item.pos,
                format!("two tools are named `{name}` (give one a `name:`)"),
            );
            continue;
        }
        let description = get("description").and_then(|n| cx.string(n, "description"));
        let approve = get("approve")
            .and_then(|n| cx.choice(n, "approve", Approve::NAMES))
            .map_or(Approve::Off, |s| Approve::parse(&s));
        let parameters = get("parameters").and_then(|n| {
            let v = n.to_json();
            match crate::llm::json::Schema::new(v.clone()) {
                Ok(_) if v.get("type").and_then(Value::as_str) == Some("object") => Some(v),
                Ok(_) => {
                    cx.err(
                        n.pos,
                        "`parameters` must be an object schema (`type: object`)",
                    );
                    None
                }
                Err(e) => {
                    cx.err(n.pos, format!("`parameters`: {e}"));
                    None
                }
            }
        });
        out.push(ToolSpec {
            name,
            description,
            kind,
            approve,
            parameters,
        });
    }
    out
}

/// A tool ready for an attempt: its spec (URL and headers rendered) and what the model is told.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub spec: ToolSpec,
    pub def: ToolDef,
}

/// The schema of a list of parameters (a skill's `args:`, a workflow's `params:`).
fn params_schema(params: &[crate::params::ParamSpec]) -> Value {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for p in params {
        let mut s = json!({"type": p.kind.as_str()});
        if !p.description.is_empty() {
            s["description"] = json!(p.description);
        }
        if !p.choices.is_empty() {
            s["enum"] = json!(p.choices);
        }
        if let Some(d) = &p.default {
            s["default"] = d.clone();
        }
        if p.required && p.default.is_none() {
            required.push(json!(p.name));
        }
        props.insert(p.name.clone(), s);
    }
    json!({"type": "object", "properties": props, "required": required})
}

/// Any flat object (a tool that declares no parameters).
fn any_object() -> Value {
    json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}})
}

/// A workflow's description and params, read from its file (found by name in the workflow
/// folders) without loading it as a workflow: the model is told what to pass; the child run
/// binds and checks them.
fn workflow_summary(dirs: &Dirs, name: &str) -> Option<(String, Value)> {
    let path = dirs.workflow_dirs().into_iter().find_map(|d| {
        ["yaml", "yml"]
            .iter()
            .map(|ext| d.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
    })?;
    let src = crate::yaml::read_file(&path, 1 << 20, "workflow file").ok()?;
    let description = src
        .root
        .get("description")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned();
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    if let Some(crate::yaml::Value::Map(entries)) = src.root.get("params").map(|n| &n.value) {
        for (k, v) in entries {
            let Some(k) = k.as_str() else { continue };
            let ty = v
                .get("type")
                .and_then(|t| t.as_str())
                .filter(|t| ["string", "integer", "number", "boolean"].contains(t))
                .unwrap_or("string");
            let mut s = json!({"type": ty});
            if let Some(d) = v.get("description").and_then(|d| d.as_str()) {
                s["description"] = json!(d);
            }
            let has_default = v.get("default").is_some();
            let req = v
                .get("required")
                .is_some_and(|r| matches!(r.value, crate::yaml::Value::Bool(true)));
            if req && !has_default {
                required.push(json!(k));
            }
            props.insert(k.to_owned(), s);
        }
    }
    Some((
        description,
        json!({"type": "object", "properties": props, "required": required}),
    ))
}

/// Prepares the tools for an attempt: each one's description and schema (a skill's manifest, a
/// workflow's params), its URL and headers rendered.
pub fn prepare(
    tools: &[ToolSpec],
    dirs: &Dirs,
    render: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Vec<Prepared>, String> {
    let mut out = Vec::with_capacity(tools.len());
    for t in tools {
        let mut spec = t.clone();
        let (description, schema) = match &t.kind {
            ToolKind::Skill(name) => {
                let skill = crate::skills::find(dirs, name)
                    .map_err(|e| format!("tool `{}`: {e}", t.name))?;
                let m = &skill.manifest;
                let d = if m.description.is_empty() {
                    format!("Runs the skill {name}.")
                } else {
                    m.description.clone()
                };
                let s = if m.args.is_empty() {
                    any_object()
                } else {
                    params_schema(&m.args)
                };
                (d, s)
            }
            ToolKind::Workflow(name) => match workflow_summary(dirs, name) {
                Some((d, s)) => (
                    if d.is_empty() {
                        format!("Runs the workflow {name} (its params are the arguments).")
                    } else {
                        d
                    },
                    s,
                ),
                None => (
                    format!("Runs the workflow {name} (its params are the arguments)."),
                    any_object(),
                ),
            },
            ToolKind::Http {
                url,
                method,
                headers,
            } => {
                let url = render(url).map_err(|e| format!("tool `{}`: url: {e}", t.name))?;
                let mut hs = Vec::new();
                for (k, v) in headers {
                    hs.push((
                        k.clone(),
                        render(v).map_err(|e| format!("tool `{}`: header {k}: {e}", t.name))?,
                    ));
                }
                let d = format!(
                    "{method} {} (the arguments are sent as {})",
                    url.split('?').next().unwrap_or(&url),
                    if method == "GET" || method == "DELETE" {
                        "the query string"
                    } else {
                        "a JSON body"
                    }
                );
                spec.kind = ToolKind::Http {
                    url,
                    method: method.clone(),
                    headers: hs,
                };
                (d, any_object())
            }
        };
        let def = ToolDef {
            name: t.name.clone(),
            description: t.description.clone().unwrap_or(description),
            schema: t.parameters.clone().unwrap_or(schema),
        };
        out.push(Prepared { spec, def });
    }
    Ok(out)
}

/// What the journal holds, line by line.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// What the conversation started from (a hash of the request): a journal of another request
    /// is not replayed.
    Start(String),
    /// A reply of the model.
    Reply {
        text: String,
        calls: Vec<ToolCall>,
        usage: Usage,
        model: String,
        provider: String,
    },
    /// A tool call's result.
    Result(CallRecord),
    /// A message the step added (a re-ask with schema errors).
    User(String),
}

/// One tool call, as the run keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallRecord {
    pub id: String,
    pub name: String,
    pub arguments: Value,
    pub result: String,
    pub is_error: bool,
    pub duration_ms: u64,
    /// The model's reply that asked for it (1 for the first).
    pub turn: u32,
}

impl Entry {
    fn to_json(&self) -> Value {
        match self {
            Self::Start(key) => json!({"t": "start", "key": key}),
            Self::Reply {
                text,
                calls,
                usage,
                model,
                provider,
            } => {
                json!({"t": "reply", "text": text, "calls": calls, "usage": usage, "model": model, "provider": provider})
            }
            Self::Result(c) => json!({"t": "result", "call": c}),
            Self::User(text) => json!({"t": "user", "text": text}),
        }
    }

    fn from_json(v: &Value) -> Option<Self> {
        let s = |v: &Value| v.as_str().map(str::to_owned);
        Some(match v["t"].as_str()? {
            "start" => Self::Start(s(&v["key"])?),
            "reply" => Self::Reply {
                text: s(&v["text"])?,
                calls: v["calls"]
                    .as_array()?
                    .iter()
                    .map(|c| {
                        Some(ToolCall {
                            id: s(&c["id"])?,
                            name: s(&c["name"])?,
                            input: c["input"].clone(),
                        })
                    })
                    .collect::<Option<_>>()?,
                usage: Usage {
                    input_tokens: v["usage"]["input_tokens"].as_u64()?,
                    output_tokens: v["usage"]["output_tokens"].as_u64()?,
                },
                model: s(&v["model"])?,
                provider: s(&v["provider"])?,
            },
            "result" => {
                let c = &v["call"];
                Self::Result(CallRecord {
                    id: s(&c["id"])?,
                    name: s(&c["name"])?,
                    arguments: c["arguments"].clone(),
                    result: s(&c["result"])?,
                    is_error: c["is_error"].as_bool()?,
                    duration_ms: c["duration_ms"].as_u64()?,
                    turn: u32::try_from(c["turn"].as_u64()?).ok()?,
                })
            }
            "user" => Self::User(s(&v["text"])?),
            _ => return None,
        })
    }
}

/// The journal of one step's conversation.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// What an earlier attempt left (empty for a new conversation).
    pub replayed: Vec<Entry>,
}

impl Journal {
    /// The journal beside `log_path`, for the request hashed as `key`: what an earlier attempt of
    /// the same request recorded is replayed; anything else is started afresh.
    pub fn open(log_path: &Path, key: &str) -> Result<Self, String> {
        let mut path = log_path.as_os_str().to_owned();
        path.push(".turns.jsonl");
        let path = PathBuf::from(path);
        let mut replayed = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            // A line cut by a crash (the last one) is dropped with everything after it.
            for line in text.lines() {
                match serde_json::from_str::<Value>(line)
                    .ok()
                    .as_ref()
                    .and_then(Entry::from_json)
                {
                    Some(e) => replayed.push(e),
                    None => break,
                }
            }
        }
        if replayed.first() != Some(&Entry::Start(key.to_owned())) {
            replayed.clear();
        }
        let j = Self { path, replayed };
        // Rewritten whole (the entries it replays, then what this attempt adds).
        let mut text = String::new();
        if j.replayed.is_empty() {
            text.push_str(&Entry::Start(key.to_owned()).to_json().to_string());
            text.push('\n');
        } else {
            for e in &j.replayed {
                text.push_str(&e.to_json().to_string());
                text.push('\n');
            }
        }
        crate::fsutil::write_atomic(&j.path, ".turns-", text.as_bytes())
            .map_err(|e| format!("cannot write the journal {}: {e}", j.path.display()))?;
        Ok(j)
    }

    /// Appends an entry and syncs it: the loop goes on only once it is on disk.
    pub fn add(&self, e: &Entry) -> Result<(), String> {
        let mut f = crate::fsutil::open_append_private(&self.path)
            .map_err(|err| format!("cannot write the journal {}: {err}", self.path.display()))?;
        let mut line = e.to_json().to_string();
        line.push('\n');
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|err| format!("cannot write the journal {}: {err}", self.path.display()))
    }
}

/// The conversation an earlier attempt left: its messages (after the first prompt), usage, the
/// calls already done, and the model's replies counted.
#[derive(Debug, Default)]
pub struct Replay {
    pub messages: Vec<Message>,
    pub usage: Usage,
    pub done: Vec<CallRecord>,
    pub turns: u32,
    pub last: Option<(String, String)>,
    pub reasked: bool,
}

/// Rebuilds the conversation from journal entries.
pub fn replay(entries: &[Entry]) -> Replay {
    let mut r = Replay::default();
    // Results of the latest reply's calls, in the order they finished.
    let mut pending: Vec<CallRecord> = Vec::new();
    let flush = |r: &mut Replay, pending: &mut Vec<CallRecord>| {
        if let Some(Message::Assistant { calls, .. }) = r.messages.last()
            && !calls.is_empty()
            && calls.iter().all(|c| pending.iter().any(|p| p.id == c.id))
        {
            let results = calls
                .iter()
                .filter_map(|c| pending.iter().find(|p| p.id == c.id))
                .map(|p| ToolResult {
                    id: p.id.clone(),
                    content: p.result.clone(),
                    is_error: p.is_error,
                })
                .collect();
            r.messages.push(Message::ToolResults(results));
            pending.clear();
        }
    };
    for e in entries {
        match e {
            Entry::Start(_) => {}
            Entry::Reply {
                text,
                calls,
                usage,
                model,
                provider,
            } => {
                r.turns += 1;
                r.usage.add(*usage);
                r.last = Some((model.clone(), provider.clone()));
                r.messages.push(Message::Assistant {
                    text: text.clone(),
                    calls: calls.clone(),
                });
            }
            Entry::Result(c) => {
                r.done.push(c.clone());
                pending.push(c.clone());
                flush(&mut r, &mut pending);
            }
            Entry::User(text) => {
                r.reasked = true;
                r.messages.push(Message::User(text.clone()));
            }
        }
    }
    r
}

/// The hash that names a conversation's request.
pub fn request_key(parts: &[&str]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// What running calls works with.
#[derive(Debug)]
pub struct Cx<'a> {
    pub tools: &'a [Prepared],
    pub dirs: &'a Dirs,
    pub input: &'a StepInput,
    pub rt: &'a Runtime,
    pub journal: &'a Journal,
}

/// How one call went, before it is recorded.
struct Outcome {
    content: String,
    is_error: bool,
}

impl Outcome {
    fn error(text: impl Into<String>) -> Self {
        Self {
            content: text.into(),
            is_error: true,
        }
    }
}

/// Why the loop must stop instead of going on.
#[derive(Debug)]
pub enum Stop {
    Cancelled,
    Failed(String),
}

/// Runs the calls of the model's reply number `turn` (those `done` already are replayed), each
/// checked and recorded; `log` gets a line per call.
pub async fn run_calls(
    cx: &Cx<'_>,
    turn: u32,
    calls: &[ToolCall],
    done: &[CallRecord],
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(Vec<ToolResult>, Vec<CallRecord>), Stop> {
    let mut results = Vec::with_capacity(calls.len());
    let mut records = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        if let Some(d) = done.iter().find(|d| d.id == call.id && d.turn == turn) {
            log(&format!(
                "> tool {} (replayed: finished before the restart)",
                call.name
            ));
            results.push(ToolResult {
                id: d.id.clone(),
                content: d.result.clone(),
                is_error: d.is_error,
            });
            records.push(d.clone());
            continue;
        }
        let args_text = cx
            .input
            .redactor
            .redact(&call.input.to_string())
            .into_owned();
        log(&format!(
            "> tool {} {}",
            call.name,
            excerpt(&args_text, 500)
        ));
        let started = Instant::now();
        let gate_key = format!("{}#tool-{turn}.{i}", cx.input.step);
        let out = one_call(cx, call, &gate_key).await?;
        let content = cx.input.redactor.redact(&out.content).into_owned();
        let content = cut(&content, RESULT_CHARS);
        let rec = CallRecord {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: cx.input.redactor.redact_json(&call.input),
            result: content.clone(),
            is_error: out.is_error,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            turn,
        };
        log(&format!(
            "< tool {} {} in {} ms: {}",
            call.name,
            if out.is_error { "failed" } else { "ok" },
            rec.duration_ms,
            excerpt(&content, 500)
        ));
        audit(cx, &rec);
        cx.journal
            .add(&Entry::Result(rec.clone()))
            .map_err(Stop::Failed)?;
        results.push(ToolResult {
            id: call.id.clone(),
            content,
            is_error: out.is_error,
        });
        records.push(rec);
    }
    Ok((results, records))
}

fn excerpt(text: &str, max: usize) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > max {
        format!("{}…", one.chars().take(max).collect::<String>())
    } else {
        one
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max).collect();
    s.push_str("\n[… cut]");
    s
}

fn audit(cx: &Cx<'_>, rec: &CallRecord) {
    let event = crate::audit::Event::new(
        "engine",
        crate::audit::Action::LlmToolCall,
        &format!("{}/{}", cx.input.run_id, cx.input.step),
        if rec.is_error { "failed" } else { "ok" },
        json!({
            "tool": rec.name,
            "arguments": rec.arguments,
            "turn": rec.turn,
            "duration_ms": rec.duration_ms,
        }),
    );
    if let Err(e) = crate::audit::AuditLog::in_dir(&cx.dirs.home).record(&event) {
        tracing::warn!(tool = %rec.name, "tool call not audited: {e}");
    }
}

/// The arguments as `k=v` text pairs (a skill's args, a workflow's params).
fn text_pairs(args: &Value) -> Vec<(String, String)> {
    args.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks, approves and runs one call.
async fn one_call(cx: &Cx<'_>, call: &ToolCall, gate_key: &str) -> Result<Outcome, Stop> {
    let Some(tool) = cx.tools.iter().find(|t| t.def.name == call.name) else {
        let names: Vec<&str> = cx.tools.iter().map(|t| t.def.name.as_str()).collect();
        return Ok(Outcome::error(format!(
            "there is no tool `{}` (the tools are: {})",
            call.name,
            names.join(", ")
        )));
    };
    if !call.input.is_object() {
        return Ok(Outcome::error("the arguments must be a JSON object"));
    }
    if let Ok(schema) = crate::llm::json::Schema::new(tool.def.schema.clone()) {
        let errors = schema.errors(&call.input);
        if !errors.is_empty() {
            return Ok(Outcome::error(format!(
                "the arguments do not fit the tool's schema: {}",
                errors.join("; ")
            )));
        }
    }
    // What the policies see: the command a skill runs, else the call as text.
    let mut launch = None;
    let subject = match &tool.spec.kind {
        ToolKind::Skill(name) => {
            let outputs = tool_outputs_path(cx.input, gate_key);
            match crate::skills::runner::prepare_step(
                cx.dirs,
                name,
                None,
                &text_pairs(&call.input),
                &outputs,
            ) {
                Ok(l) => {
                    let text = super::skill::launch_text(&l);
                    launch = Some((l, outputs));
                    text
                }
                Err(e) => return Ok(Outcome::error(format!("the skill cannot run: {e}"))),
            }
        }
        ToolKind::Workflow(name) => format!("workflow {name} {}", call.input),
        ToolKind::Http { url, method, .. } => format!("http {method} {url} {}", call.input),
    };
    let target = format!("{}/{}", cx.input.run_id, cx.input.step);
    let mut wait_for: Option<String> = None;
    match crate::policy::gate(
        "llm tool",
        "engine",
        &target,
        &[Subject::Command(subject.clone())],
    ) {
        Gate::Allow => {}
        Gate::Deny(why) => {
            return Ok(Outcome::error(cx.input.redactor.redact(&why).into_owned()));
        }
        Gate::RequireApproval { message, .. } => wait_for = Some(message),
    }
    let args_text = cx
        .input
        .redactor
        .redact(&call.input.to_string())
        .into_owned();
    let fingerprint = request_key(&[&call.name, &call.input.to_string()]);
    if wait_for.is_none() {
        wait_for = match tool.spec.approve {
            Approve::Off => None,
            Approve::Always => Some(format!(
                "the model calls tool `{}` with {args_text}",
                call.name
            )),
            Approve::OnMiss if approved_before(cx.dirs, &fingerprint) => None,
            Approve::OnMiss => Some(format!(
                "the model calls tool `{}` with {args_text} (not approved before with these arguments)",
                call.name
            )),
        };
    }
    if let Some(message) = wait_for {
        let Some(services) = cx.rt.services.as_deref() else {
            return Err(Stop::Failed(format!(
                "{message}: it needs approval, and there is no run to wait in"
            )));
        };
        let mut sub = cx.input.clone();
        sub.step = gate_key.to_owned();
        let request = approval::GateRequest {
            message: cx.input.redactor.redact(&message).into_owned(),
            approvers: Vec::new(),
            quorum: 1,
            timeout: None,
            on_timeout: approval::TimeoutDecision::Reject,
            input: json!([]),
        };
        let decided = services.await_approval(&sub, request, &cx.rt.cancel).await;
        services.gate_closed(cx.input);
        match decided {
            Ok(approval::Resolution::Approved { .. })
            | Ok(approval::Resolution::TimedOut { approve: true, .. }) => {
                if tool.spec.approve == Approve::OnMiss {
                    remember_approval(cx.dirs, &fingerprint);
                }
            }
            Ok(other) => {
                return Ok(Outcome::error(format!(
                    "the call was not approved: {}",
                    approval::describe(&other)
                )));
            }
            Err(WaitEnd::Cancelled) => return Err(Stop::Cancelled),
            Err(WaitEnd::Failed(why)) => return Err(Stop::Failed(why)),
        }
    }
    match &tool.spec.kind {
        ToolKind::Skill(_) => {
            let Some((launch, outputs)) = launch else {
                return Ok(Outcome::error("the skill was not prepared"));
            };
            let mut sub = cx.input.clone();
            sub.timeout = launch.timeout;
            sub.outputs_path = outputs;
            let r = super::skill::run_launch(&launch, &sub, &cx.rt.cancel, false).await;
            match r.outcome {
                StepOutcome::Cancelled => Err(Stop::Cancelled),
                StepOutcome::Succeeded => Ok(Outcome {
                    content: if r.outputs.is_empty() {
                        r.stdout
                    } else {
                        json!({"stdout": r.stdout, "outputs": r.outputs}).to_string()
                    },
                    is_error: false,
                }),
                StepOutcome::Failed { reason } => Ok(Outcome::error(format!(
                    "{reason}\n{}\n{}",
                    r.stdout, r.stderr_tail
                ))),
            }
        }
        ToolKind::Workflow(name) => {
            let Some(services) = cx.rt.services.as_deref() else {
                return Ok(Outcome::error("a workflow tool needs a workflow run"));
            };
            let child = super::subworkflow::SubWorkflowStep {
                workflow: name.clone(),
                params: text_pairs(&call.input)
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
                wait: true,
            };
            let mut sub = cx.input.clone();
            sub.step = gate_key.to_owned();
            // The same child is found again after a restart, whatever the attempt.
            sub.attempt = 0;
            match services.await_child(&sub, &child, &cx.rt.cancel).await {
                Ok(end) => {
                    let ok = end.status == Some(crate::store::RunStatus::Succeeded);
                    Ok(Outcome {
                        content: json!({
                            "run_id": end.run_id,
                            "status": end.status.map(crate::store::RunStatus::as_str),
                            "outputs": end.outputs,
                            "error": end.error,
                        })
                        .to_string(),
                        is_error: !ok,
                    })
                }
                Err(WaitEnd::Cancelled) => Err(Stop::Cancelled),
                Err(WaitEnd::Failed(why)) => Ok(Outcome::error(why)),
            }
        }
        ToolKind::Http {
            url,
            method,
            headers,
        } => http_call(url, method, headers, &call.input, &cx.rt.cancel).await,
    }
}

fn tool_outputs_path(input: &StepInput, key: &str) -> PathBuf {
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = input
        .log_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    dir.join(format!("{clean}.out"))
}

async fn http_call(
    url: &str,
    method: &str,
    headers: &[(String, String)],
    args: &Value,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Outcome, Stop> {
    let client = match crate::llm::client() {
        Ok(c) => c,
        Err(e) => return Ok(Outcome::error(e.to_string())),
    };
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut target = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Ok(Outcome::error(format!("bad URL `{url}`: {e}"))),
    };
    let in_query = m == reqwest::Method::GET || m == reqwest::Method::DELETE;
    if in_query {
        let pairs = text_pairs(args);
        if !pairs.is_empty() {
            let mut q = target.query_pairs_mut();
            for (k, v) in &pairs {
                q.append_pair(k, v);
            }
        }
    }
    let mut req = client.request(m.clone(), target).timeout(HTTP_TIMEOUT);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if !in_query {
        req = req
            .header("content-type", "application/json")
            .body(args.to_string());
    }
    let work = async {
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body))
    };
    tokio::select! {
        r = work => Ok(match r {
            Ok((status, body)) if status.is_success() => Outcome { content: body, is_error: false },
            Ok((status, body)) => Outcome::error(format!("HTTP {}: {body}", status.as_u16())),
            Err(e) => Outcome::error(format!("the request failed: {e}")),
        }),
        () = cancel.cancelled() => Err(Stop::Cancelled),
    }
}

/// Where `on_miss` approvals are remembered (one fingerprint of tool and arguments a line).
fn approvals_file(dirs: &Dirs) -> PathBuf {
    dirs.home.join("llm").join("approved-tool-calls")
}

fn approved_before(dirs: &Dirs, fingerprint: &str) -> bool {
    std::fs::read_to_string(approvals_file(dirs))
        .map(|t| t.lines().any(|l| l.trim() == fingerprint))
        .unwrap_or(false)
}

fn remember_approval(dirs: &Dirs, fingerprint: &str) {
    let path = approvals_file(dirs);
    let write = || -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            crate::fsutil::create_dirs_private(d)?;
        }
        let mut f = crate::fsutil::open_append_private(&path)?;
        writeln!(f, "{fingerprint}")?;
        f.sync_data()
    };
    if let Err(e) = write() {
        tracing::warn!("the approval of a tool call is not remembered: {e}");
    }
}

/// The tokens a run's llm steps used so far, and adding to it: one line per reply in
/// `usage.tokens` beside the run's step logs (appends of a line are atomic, so parallel steps
/// may add at once).
#[derive(Debug, Clone)]
pub struct RunBudget {
    path: PathBuf,
    pub limit: u64,
}

impl RunBudget {
    pub fn new(log_path: &Path, limit: u64) -> Self {
        let dir = log_path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Self {
            path: dir.join("llm-usage.tokens"),
            limit,
        }
    }

    /// Tokens used by the run so far.
    pub fn used(&self) -> u64 {
        std::fs::read_to_string(&self.path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    }

    pub fn add(&self, step: &str, usage: Usage) {
        let write = || -> std::io::Result<()> {
            let mut f = crate::fsutil::open_append_private(&self.path)?;
            writeln!(f, "{} {step}", usage.total())
        };
        if let Err(e) = write() {
            tracing::warn!("token usage not recorded for the run's budget: {e}");
        }
    }
}

/// Token counts of every reply so far, by model (for the outputs).
pub fn merge_usage(into: &mut BTreeMap<String, Usage>, model: &str, usage: Usage) {
    into.entry(model.to_owned()).or_default().add(usage);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_rebuilds_the_conversation_and_the_finished_calls() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "t".into(),
            input: json!({"a": 1}),
        };
        let rec = |id: &str| CallRecord {
            id: id.into(),
            name: "t".into(),
            arguments: json!({"a": 1}),
            result: format!("r{id}"),
            is_error: false,
            duration_ms: 1,
            turn: 1,
        };
        let entries = vec![
            Entry::Start("k".into()),
            Entry::Reply {
                text: "".into(),
                calls: vec![call("1"), call("2")],
                usage: Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                },
                model: "m".into(),
                provider: "p".into(),
            },
            Entry::Result(rec("1")),
        ];
        for e in &entries {
            assert_eq!(Entry::from_json(&e.to_json()).as_ref(), Some(e));
        }
        let r = replay(&entries);
        assert_eq!(r.turns, 1);
        assert_eq!(r.usage.total(), 7);
        assert_eq!(r.done.len(), 1);
        // The second call is not finished: no results message yet.
        assert_eq!(r.messages.len(), 1);
        let mut all = entries.clone();
        all.push(Entry::Result(rec("2")));
        let r = replay(&all);
        assert_eq!(r.messages.len(), 2);
        assert!(matches!(&r.messages[1], Message::ToolResults(v) if v.len() == 2));
    }

    #[test]
    fn tool_names_fit_the_providers_rules() {
        assert_eq!(tool_name("disk.report"), "disk_report");
        assert_eq!(tool_name(""), "tool");
        assert_eq!(tool_name(&"x".repeat(80)).len(), 64);
    }
}
