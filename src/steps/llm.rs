//! The llm step: one prompt to a provider chain (`type: llm`; the seed's `claude_prompt`, whose
//! `command:` is the prompt, is an alias).
//!
//! ```yaml
//! - name: summarize
//!   type: llm
//!   prompt: "Summarize: ${{ steps.collect.stdout }}"
//!   system: You are terse.
//!   provider: anthropic        # else the `job` role's provider (JOB_MODEL, llm.roles.job)
//!   model: claude-sonnet-4-5   # else the provider's
//!   max_tokens: 800
//!   temperature: 0.2
//!   json_schema: {type: object, required: [status], properties: {status: {type: string}}}
//! ```
//!
//! The reply streams into the step log as it arrives (masked). Outputs: `text`, `model`,
//! `provider`, `usage` (`input_tokens`, `output_tokens`), and with `json_schema:` the parsed value
//! as `json`: the reply is repaired (fences, trailing commas, a cut tail), checked against the
//! schema, and on failure the model is asked once more with the errors; a reply that still does
//! not fit fails the step with it in the log. The providers fall back as `llm::complete` says;
//! each fallback is a line in the log and an `llm.fallback` audit entry.

use std::io::Write as _;

use serde_json::{Value, json};

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport, llm_tools};
use crate::config::Dirs;
use crate::diagnostic::did_you_mean;
use crate::llm::{self, Config, Message, Request, Role, json::Schema};
use crate::redact::StreamRedactor;
use crate::yaml::Node;

/// An llm step as written (expressions rendered by `prepare`).
#[derive(Debug, Clone)]
pub struct LlmStep {
    pub prompt: String,
    pub system: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub role: Role,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub json_schema: Option<Value>,
    /// What the model may call (`tools:`).
    pub tools: Vec<llm_tools::ToolSpec>,
    /// The most replies of the model (`max_turns:`).
    pub max_turns: Option<u32>,
    /// Where `provider:` and `model:` stand in the file (for `claw workflow validate`).
    pub provider_pos: Option<crate::diagnostic::Pos>,
    pub model_pos: Option<crate::diagnostic::Pos>,
    /// What an attempt needs, looked up by `prepare`.
    pub prepared: Option<std::sync::Arc<Prepared>>,
}

/// The configuration an attempt uses.
#[derive(Debug)]
pub struct Prepared {
    pub config: Config,
    pub chain: Vec<String>,
    pub schema: Option<Schema>,
    pub home: std::path::PathBuf,
    pub dirs: Dirs,
    pub tools: Vec<llm_tools::Prepared>,
    /// The run's token budget (`llm.max_tokens_per_run`).
    pub budget: Option<u64>,
}

impl Kind for LlmStep {
    const NAMES: &'static [&'static str] = &["llm", "claude_prompt"];
    const KEYS: &'static [&'static str] = &[
        "prompt",
        "system",
        "provider",
        "model",
        "role",
        "max_tokens",
        "temperature",
        "json_schema",
        "tools",
        "max_turns",
        "outputs",
    ];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let step = cx.step.to_owned();
        let Some(pnode) = node.get("prompt").or_else(|| node.get("command")) else {
            cx.err(
                node.pos,
                format!("step `{step}` (llm) needs `prompt:` (the seed's `command:`)"),
            );
            return None;
        };
        let prompt = cx.template_string(pnode, "prompt")?;
        let system = node
            .get("system")
            .and_then(|n| cx.template_string(n, "system"));
        let provider = node.get("provider").and_then(|n| {
            let name = cx.string(n, "provider")?;
            check_provider(cx, n, &name);
            Some(name)
        });
        let model = node
            .get("model")
            .and_then(|n| cx.template_string(n, "model"));
        let role = match node.get("role") {
            Some(n) => match cx.choice(n, "role", &["job", "chat"]) {
                Some(r) => Role::parse(&r).unwrap_or(Role::Job),
                None => Role::Job,
            },
            None => Role::Job,
        };
        // The seed's `model:` meant a provider name (claude, chatgpt, gpt); a model is a model.
        let max_tokens = node
            .get("max_tokens")
            .and_then(|n| cx.positive_int(n, "max_tokens"));
        let temperature = node.get("temperature").and_then(|n| match n.value {
            crate::yaml::Value::Float(f) if (0.0..=2.0).contains(&f) => Some(f),
            #[allow(clippy::cast_precision_loss, reason = "0, 1 or 2")]
            crate::yaml::Value::Int(i) if (0..=2).contains(&i) => Some(i as f64),
            _ => {
                cx.err(n.pos, "`temperature` must be a number from 0 to 2");
                None
            }
        });
        let json_schema = node.get("json_schema").and_then(|n| {
            let v = n.to_json();
            match Schema::new(v.clone()) {
                Ok(_) => Some(v),
                Err(e) => {
                    cx.err(n.pos, format!("`json_schema`: {e}"));
                    None
                }
            }
        });
        let tools = node
            .get("tools")
            .map(|n| llm_tools::load(cx, n))
            .unwrap_or_default();
        let max_turns = node.get("max_turns").and_then(|n| {
            if node.get("tools").is_none() {
                cx.err(n.pos, "`max_turns` bounds a tool loop: it needs `tools:`");
            }
            cx.positive_int(n, "max_turns")
        });
        Some(Self {
            prompt,
            system,
            provider,
            model,
            role,
            max_tokens,
            temperature,
            json_schema,
            tools,
            max_turns,
            provider_pos: node.get("provider").map(|n| n.pos),
            model_pos: node.get("model").map(|n| n.pos),
            prepared: None,
        })
    }

    /// Asking again costs tokens but changes nothing.
    fn idempotent(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        first_line(&self.prompt, 200)
    }

    fn templates(&self) -> Vec<&str> {
        let mut t = vec![self.prompt.as_str()];
        t.extend(self.system.as_deref());
        t.extend(self.model.as_deref());
        for tool in &self.tools {
            if let llm_tools::ToolKind::Http { url, headers, .. } = &tool.kind {
                t.push(url.as_str());
                t.extend(headers.iter().map(|(_, v)| v.as_str()));
            }
        }
        t
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let config = load_config(cx.dirs)?;
        let chain = config.chain(self.role, self.provider.as_deref());
        // An unknown name fails now, before anything is sent.
        if let Some(first) = chain.first() {
            config.provider(first)?;
        }
        cx.new_secrets.extend(config.secret_values());
        let schema = self.json_schema.clone().map(Schema::new).transpose()?;
        let model = self.model.as_deref().map(|m| cx.plain(m)).transpose()?;
        let tools = llm_tools::prepare(&self.tools, cx.dirs, &|t| cx.plain(t))?;
        let budget = config.max_tokens_per_run()?;
        Ok(Self {
            prompt: cx.plain(&self.prompt)?,
            system: self.system.as_deref().map(|s| cx.plain(s)).transpose()?,
            model,
            prepared: Some(std::sync::Arc::new(Prepared {
                config,
                chain,
                schema,
                home: cx.dirs.home.clone(),
                dirs: cx.dirs.clone(),
                tools,
                budget,
            })),
            ..self.clone()
        })
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let Some(p) = self.prepared.as_deref() else {
            return StepReport::failed("the llm step was not prepared (an engine fault)");
        };
        run_prepared(self, p, input, rt).await
    }

    fn environment_problems(&self, dirs: &Dirs) -> Vec<String> {
        let config = match load_config(dirs) {
            Ok(c) => c,
            Err(e) => return vec![e],
        };
        let chain = config.chain(self.role, self.provider.as_deref());
        let mut out: Vec<String> = chain
            .iter()
            .filter_map(|n| config.provider(n).err())
            .collect();
        for t in &self.tools {
            if let llm_tools::ToolKind::Skill(name) = &t.kind {
                out.extend(
                    crate::skills::runner::environment_problems(dirs, name)
                        .into_iter()
                        .map(|p| format!("tool `{}`: {p}", t.name)),
                );
            }
        }
        out
    }

    fn show(&self) -> Vec<(&'static str, Value)> {
        let mut v = vec![("prompt", json!(self.prompt))];
        if let Some(p) = &self.provider {
            v.push(("provider", json!(p)));
        }
        if let Some(m) = &self.model {
            v.push(("model", json!(m)));
        }
        if !self.tools.is_empty() {
            v.push((
                "tools",
                json!(self.tools.iter().map(|t| &t.name).collect::<Vec<_>>()),
            ));
        }
        v
    }
}

fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// A provider name that is not a built-in one but reads like one is a typo (names declared in
/// `claw.yaml` are checked when the step is prepared and by `claw workflow validate --env`).
fn check_provider(cx: &mut LoadCx<'_>, node: &Node, name: &str) {
    let builtin = llm::config::builtin_names();
    if builtin.contains(&name) || name.contains("${{") {
        return;
    }
    if let Some(help) = did_you_mean(name, builtin.iter().copied()) {
        cx.err_help(
            node.pos,
            format!(
                "unknown LLM provider `{name}` (built in: {}; others are declared under `llm.providers` in claw.yaml)",
                builtin.join(", ")
            ),
            Some(help),
        );
    }
}

/// The configuration of `dirs` (settings from every layer, the vault's included).
pub fn load_config(dirs: &Dirs) -> Result<Config, String> {
    let (layers, _notes) =
        crate::vault::settings(&dirs.root, &dirs.home, std::collections::BTreeMap::new());
    let v = crate::vault::Vault::new(&dirs.home);
    let secrets = if v.vault_path().exists() {
        v.all()
            .map(|all| {
                all.iter()
                    .map(|(k, s)| (k.clone(), s.expose().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        std::collections::BTreeMap::new()
    };
    Config::load(&dirs.root, &layers, secrets).map_err(|e| e.render())
}

/// The step log: lines and streamed text, masked, written as they come.
struct StepLog {
    file: Option<std::fs::File>,
    stream: StreamRedactor,
    redactor: crate::redact::Redactor,
    /// Whether the last thing written ended a line.
    at_line_start: bool,
}

impl StepLog {
    fn open(input: &StepInput) -> Self {
        Self {
            file: crate::fsutil::open_append_private(&input.log_path).ok(),
            stream: StreamRedactor::new(input.redactor.clone()),
            redactor: input.redactor.clone(),
            at_line_start: true,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        // The log is a convenience: a write error must not change the step's outcome.
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(bytes);
            let _ = f.flush();
        }
    }

    fn end_text(&mut self) {
        let rest = self.stream.finish();
        self.write(&rest);
        if !self.at_line_start {
            self.write(b"\n");
            self.at_line_start = true;
        }
    }

    fn line(&mut self, text: &str) {
        self.end_text();
        let clean = self.redactor.redact(text).into_owned();
        self.write(clean.as_bytes());
        self.write(b"\n");
    }
}

impl llm::Sink for StepLog {
    fn text(&mut self, delta: &str) {
        if delta.is_empty() {
            return;
        }
        let out = self.stream.push(delta.as_bytes());
        self.write(&out);
        self.at_line_start = delta.ends_with('\n');
    }

    fn note(&mut self, line: &str) {
        self.line(&format!("! {line}"));
    }
}

/// How many characters of the prompt the log shows.
const PROMPT_EXCERPT: usize = 2000;

async fn run_prepared(step: &LlmStep, p: &Prepared, input: &StepInput, rt: &Runtime) -> StepReport {
    let mut log = StepLog::open(input);
    let mut system = step.system.clone();
    if let Some(s) = &p.schema {
        let ask = format!(
            "Reply with only a JSON value (no prose, no Markdown fence) that is valid against this JSON Schema:\n{}",
            s.source
        );
        system = Some(match system {
            Some(sys) => format!("{sys}\n\n{ask}"),
            None => ask,
        });
    }
    let mut req = Request {
        system,
        messages: vec![Message::User(step.prompt.clone())],
        model: step.model.clone(),
        max_tokens: step.max_tokens.unwrap_or(llm::DEFAULT_MAX_TOKENS),
        temperature: step.temperature,
        tools: p.tools.iter().map(|t| t.def.clone()).collect(),
        timeout: input.timeout,
    };
    log.line(&format!(
        "> llm: {}{}",
        p.chain.join(" → "),
        step.model
            .as_deref()
            .map(|m| format!(" (model {m})"))
            .unwrap_or_default()
    ));
    log.line(&format!(
        "> prompt: {}",
        step.prompt.chars().take(PROMPT_EXCERPT).collect::<String>()
    ));
    let target = format!("{}/{}", input.run_id, input.step);
    let budget = p
        .budget
        .map(|b| llm_tools::RunBudget::new(&input.log_path, b));
    let max_turns = step.max_turns.unwrap_or(llm_tools::DEFAULT_MAX_TURNS);
    // The journal: what an earlier attempt of this same request did is replayed.
    let tool_names: Vec<&str> = p.tools.iter().map(|t| t.def.name.as_str()).collect();
    let key = llm_tools::request_key(&[
        &step.prompt,
        req.system.as_deref().unwrap_or_default(),
        step.model.as_deref().unwrap_or_default(),
        &tool_names.join(","),
    ]);
    let journal = if p.tools.is_empty() {
        None
    } else {
        match llm_tools::Journal::open(&input.log_path, &key) {
            Ok(j) => Some(j),
            Err(e) => return StepReport::failed(e),
        }
    };
    let replay = journal
        .as_ref()
        .map(|j| llm_tools::replay(&j.replayed))
        .unwrap_or_default();
    let mut usage = replay.usage;
    let mut turns = replay.turns;
    let mut asked = u32::from(replay.reasked) + 1;
    let mut calls: Vec<llm_tools::CallRecord> = Vec::new();
    let done = replay.done;
    let mut last = replay.last.unwrap_or_default();
    if turns > 0 {
        log.line(&format!(
            "> resuming the conversation: {turns} replies and {} tool calls replayed from the journal",
            done.len()
        ));
    }
    req.messages.extend(replay.messages);
    let tool_cx = journal.as_ref().map(|j| llm_tools::Cx {
        tools: &p.tools,
        dirs: &p.dirs,
        input,
        rt,
        journal: j,
    });
    loop {
        // The calls of the last reply, if it asked for any, run before the model is asked again.
        if let (Some(Message::Assistant { calls: pending, .. }), Some(cx)) =
            (req.messages.last(), tool_cx.as_ref())
            && !pending.is_empty()
        {
            let pending = pending.clone();
            let result =
                llm_tools::run_calls(cx, turns, &pending, &done, &mut |l| log.line(l)).await;
            match result {
                Ok((results, records)) => {
                    calls.extend(records);
                    req.messages.push(Message::ToolResults(results));
                    continue;
                }
                Err(llm_tools::Stop::Cancelled) => {
                    log.line("! cancelled");
                    return StepReport::cancelled();
                }
                Err(llm_tools::Stop::Failed(why)) => {
                    log.line(&format!("! {why}"));
                    return StepReport::failed(why);
                }
            }
        }
        if journal.is_some() && turns >= max_turns {
            let why =
                format!("the model still asks for tools after max_turns ({max_turns}) replies");
            log.line(&format!("! {why}"));
            let mut r = StepReport::failed_for_good(why);
            r.outputs = outputs_of(&usage, &last, &calls, turns);
            return r;
        }
        if let Some(b) = &budget {
            let used = b.used();
            if used >= b.limit {
                return over_budget(&mut log, used, b.limit, &usage, &last, &calls, turns);
            }
            // The reply may not take more than what is left.
            let left = u32::try_from(b.limit - used).unwrap_or(u32::MAX);
            req.max_tokens = req.max_tokens.min(left);
        }
        log.line("< reply:");
        let started = std::time::Instant::now();
        let result = llm::complete(
            llm::Ask {
                config: &p.config,
                chain: &p.chain,
                sink: &mut log,
                cancel: &rt.cancel,
                actor: "engine",
                target: &target,
                audit_home: Some(&p.home),
                kill_grace: input.kill_grace,
            },
            &req,
        )
        .await;
        let reply = match result {
            Ok((reply, _)) => reply,
            Err((llm::LlmError::Cancelled, _)) => {
                log.line("! cancelled");
                return StepReport::cancelled();
            }
            Err((e, _)) => {
                let why = format!("the LLM request failed: {e}");
                log.line(&format!("! {why}"));
                let mut r = if e.falls_back() {
                    StepReport::failed(why)
                } else {
                    StepReport::failed_for_good(why)
                };
                if let llm::LlmError::Status { retry_after, .. } = e {
                    r.retry_after = retry_after;
                }
                return r;
            }
        };
        log.end_text();
        usage.add(reply.usage);
        turns += 1;
        last = (reply.model.clone(), reply.provider.clone());
        if let Some(b) = &budget {
            b.add(&input.step, reply.usage);
        }
        log.line(&format!(
            "< {} {} in {} ms, {} input + {} output tokens, stop: {}",
            reply.provider,
            reply.model,
            started.elapsed().as_millis(),
            reply.usage.input_tokens,
            reply.usage.output_tokens,
            if reply.stop_reason.is_empty() {
                "-"
            } else {
                &reply.stop_reason
            }
        ));
        // Only the tools offered may be called; a step without tools takes the text.
        let reply_calls = if journal.is_some() {
            reply.calls.clone()
        } else {
            Vec::new()
        };
        if let Some(j) = &journal
            && let Err(e) = j.add(&llm_tools::Entry::Reply {
                text: reply.text.clone(),
                calls: reply_calls.clone(),
                usage: reply.usage,
                model: reply.model.clone(),
                provider: reply.provider.clone(),
            })
        {
            log.line(&format!("! {e}"));
            return StepReport::failed(e);
        }
        req.model = Some(reply.model.clone())
            .filter(|m| !m.is_empty())
            .or(req.model);
        if !reply_calls.is_empty() {
            req.messages.push(Message::Assistant {
                text: reply.text.clone(),
                calls: reply_calls,
            });
            continue;
        }
        if let Some(b) = &budget {
            let used = b.used();
            if used > b.limit {
                return over_budget(&mut log, used, b.limit, &usage, &last, &calls, turns);
            }
        }
        let text = input.redactor.redact(&reply.text).into_owned();
        let mut outputs = outputs_of(&usage, &last, &calls, turns);
        outputs.insert("text".into(), json!(text));
        let Some(schema) = &p.schema else {
            return StepReport {
                stdout: text,
                outputs,
                ..StepReport::succeeded()
            };
        };
        let problems = match llm::json::repair(&reply.text) {
            Ok(v) => {
                let errors = schema.errors(&v);
                if errors.is_empty() {
                    outputs.insert("json".into(), input.redactor.redact_json(&v));
                    return StepReport {
                        stdout: text,
                        outputs,
                        ..StepReport::succeeded()
                    };
                }
                errors
            }
            Err(e) => vec![format!("not JSON: {e}")],
        };
        for p in &problems {
            log.line(&format!("! {p}"));
        }
        if asked >= 2 {
            return StepReport {
                outputs,
                stdout: text,
                ..StepReport::failed_for_good(format!(
                    "the reply is not valid against json_schema after a re-ask: {}",
                    problems.join("; ")
                ))
            };
        }
        asked += 1;
        log.line("> re-asking once with the validation errors");
        let again = format!(
            "Your reply is not valid against the JSON Schema:\n- {}\nReply again with only the corrected JSON value.",
            problems.join("\n- ")
        );
        if let Some(j) = &journal
            && let Err(e) = j.add(&llm_tools::Entry::User(again.clone()))
        {
            return StepReport::failed(e);
        }
        req.messages.push(Message::Assistant {
            text: reply.text.clone(),
            calls: Vec::new(),
        });
        req.messages.push(Message::User(again));
    }
}

/// The outputs every end has: `model`, `provider`, `usage`, and with tools `tool_calls` and
/// `turns`.
fn outputs_of(
    usage: &llm::Usage,
    last: &(String, String),
    calls: &[llm_tools::CallRecord],
    turns: u32,
) -> serde_json::Map<String, Value> {
    let mut outputs = serde_json::Map::new();
    outputs.insert("model".into(), json!(last.0));
    outputs.insert("provider".into(), json!(last.1));
    outputs.insert("usage".into(), json!(usage));
    if !calls.is_empty() {
        outputs.insert("tool_calls".into(), json!(calls));
        outputs.insert("turns".into(), json!(turns));
    }
    outputs
}

fn over_budget(
    log: &mut StepLog,
    used: u64,
    limit: u64,
    usage: &llm::Usage,
    last: &(String, String),
    calls: &[llm_tools::CallRecord],
    turns: u32,
) -> StepReport {
    let why = format!(
        "token budget exceeded: this run's llm steps have used {used} tokens of max_tokens_per_run {limit} (llm.max_tokens_per_run in claw.yaml, or LLM_MAX_TOKENS_PER_RUN)"
    );
    log.line(&format!("! {why}"));
    let mut r = StepReport::failed_for_good(why);
    r.outputs = outputs_of(usage, last, calls, turns);
    r
}

/// What `claw workflow validate` finds wrong in an llm step against this machine's
/// configuration (`claw.yaml`'s `llm:`): a provider that is not one, a model its provider does
/// not list under `models:`. Each problem names the line and column.
pub fn config_problems(dirs: &Dirs, name: &str, step: &LlmStep) -> Vec<String> {
    // Settings only: validating never opens the vault.
    let (layers, _notes) =
        crate::vault::settings(&dirs.root, &dirs.home, std::collections::BTreeMap::new());
    let config = match Config::load(&dirs.root, &layers, std::collections::BTreeMap::new()) {
        Ok(c) => c,
        Err(e) => return vec![e.render()],
    };
    let at = |pos: Option<crate::diagnostic::Pos>| {
        pos.map(|p| format!("line {}, column {}: ", p.line, p.col))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let provider = step
        .provider
        .clone()
        .unwrap_or_else(|| config.role_provider(step.role));
    if provider.contains("${{") {
        return out;
    }
    if let Err(e) = config.provider(&provider) {
        out.push(format!("{}step `{name}`: {e}", at(step.provider_pos)));
        return out;
    }
    if let Some(model) = step.model.as_deref().filter(|m| !m.contains("${{"))
        && let Err(e) = config.check_model(&provider, model)
    {
        out.push(format!("{}step `{name}`: {e}", at(step.model_pos)));
    }
    out
}
