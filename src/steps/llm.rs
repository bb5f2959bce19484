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

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport};
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
        for key in ["tools", "max_turns"] {
            if let Some(n) = node.get(key) {
                cx.err(
                    n.pos,
                    format!("`{key}` (tool calling) is not available yet in this version of claw"),
                );
            }
        }
        Some(Self {
            prompt,
            system,
            provider,
            model,
            role,
            max_tokens,
            temperature,
            json_schema,
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
        Ok(Self {
            prompt: cx.plain(&self.prompt)?,
            system: self.system.as_deref().map(|s| cx.plain(s)).transpose()?,
            model,
            prepared: Some(std::sync::Arc::new(Prepared {
                config,
                chain,
                schema,
                home: cx.dirs.home.clone(),
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
        chain
            .iter()
            .filter_map(|n| config.provider(n).err())
            .collect()
    }

    fn show(&self) -> Vec<(&'static str, Value)> {
        let mut v = vec![("prompt", json!(self.prompt))];
        if let Some(p) = &self.provider {
            v.push(("provider", json!(p)));
        }
        if let Some(m) = &self.model {
            v.push(("model", json!(m)));
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
        tools: Vec::new(),
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
    let mut usage = llm::Usage::default();
    let mut asked = 0;
    loop {
        asked += 1;
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
        let text = input.redactor.redact(&reply.text).into_owned();
        let mut outputs = serde_json::Map::new();
        outputs.insert("text".into(), json!(text));
        outputs.insert("model".into(), json!(reply.model));
        outputs.insert("provider".into(), json!(reply.provider));
        outputs.insert("usage".into(), json!(usage));
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
        log.line("> re-asking once with the validation errors");
        req.model = Some(reply.model.clone())
            .filter(|m| !m.is_empty())
            .or(req.model);
        req.messages.push(Message::Assistant {
            text: reply.text.clone(),
            calls: Vec::new(),
        });
        req.messages.push(Message::User(format!(
            "Your reply is not valid against the JSON Schema:\n- {}\nReply again with only the corrected JSON value.",
            problems.join("\n- ")
        )));
    }
}
