//! The providers claw can ask: `claw.yaml`'s `llm:` section over the seed's variables.
//!
//! ```yaml
//! llm:
//!   default: anthropic            # the provider of a role that names none
//!   roles: {chat: anthropic, job: local}
//!   fallback: [openai, claude-cli]
//!   providers:
//!     anthropic: {model: claude-sonnet-4-5}
//!     local: {kind: openai, base_url: "http://127.0.0.1:8080/v1", model: qwen2.5}
//! ```
//!
//! Four providers exist without configuration: `anthropic` (`ANTHROPIC_API_KEY`,
//! `ANTHROPIC_BASE_URL`, `ANTHROPIC_MODEL`), `openai` (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
//! `OPENAI_MODEL`), `ollama` (`OLLAMA_BASE_URL`, `OLLAMA_MODEL`) and `claude-cli` (the `claude`
//! program). The seed's names are aliases: `claude` is `claude-cli`, `chatgpt` and `gpt` are
//! `openai`. A provider entry may set `kind`, `base_url`, `model`, `api_key` (the *name* of a
//! setting or vault secret holding the key, never the key), `command` and `timeout`.
//!
//! A role's provider: the seed's variable (`CHAT_MODEL`, `JOB_MODEL`) when it is set anywhere but
//! its default, else `roles:`, else `default:`, else the variable's default (`claude`). The chain
//! follows it with `fallback:` (else `LLM_PROVIDERS`), and — as the seed does when
//! `OPENAI_API_KEY` is set and `LLM_FALLBACK` is not false — `openai`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::resolve::{DEFS, Layers, Source};
use crate::diagnostic::{FileErrors, did_you_mean};
use crate::yaml::{self, Node, Reader};

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Anthropic,
    OpenAi,
    Ollama,
    ClaudeCli,
}

impl ProviderKind {
    pub const NAMES: &'static [&'static str] = &["anthropic", "openai", "ollama", "claude-cli"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "anthropic" => Some(Self::Anthropic),
            "openai" => Some(Self::OpenAi),
            "ollama" => Some(Self::Ollama),
            "claude-cli" => Some(Self::ClaudeCli),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Ollama => "ollama",
            Self::ClaudeCli => "claude-cli",
        }
    }
}

/// The seed's provider names and what they mean here.
pub const ALIASES: &[(&str, &str)] = &[
    ("claude", "claude-cli"),
    ("chatgpt", "openai"),
    ("gpt", "openai"),
];

/// Every provider name claw knows without `claw.yaml` (aliases included).
pub fn builtin_names() -> Vec<&'static str> {
    ProviderKind::NAMES
        .iter()
        .copied()
        .chain(ALIASES.iter().map(|(a, _)| *a))
        .collect()
}

/// The canonical name of a provider name (`claude` → `claude-cli`).
pub fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, c)| c)
}

/// Who asks: the chat front ends or jobs and steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Chat,
    Job,
}

impl Role {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "chat" => Some(Self::Chat),
            "job" => Some(Self::Job),
            _ => None,
        }
    }

    fn variable(self) -> &'static str {
        match self {
            Self::Chat => "CHAT_MODEL",
            Self::Job => "JOB_MODEL",
        }
    }
}

/// One provider, resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub model: String,
    /// The key (`None`: not set; a provider that needs one is then unavailable).
    pub api_key: Option<String>,
    /// Where the key comes from (a setting's or secret's name), for `claw llm list`.
    pub key_name: Option<String>,
    /// The program of `claude-cli`.
    pub command: String,
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// An entry of `llm.providers`, as written.
#[derive(Debug, Clone, Default)]
struct Entry {
    kind: Option<ProviderKind>,
    base_url: Option<String>,
    model: Option<String>,
    api_key: Option<String>,
    command: Option<String>,
    timeout: Option<Duration>,
    /// `models:`: the models the provider serves (a step naming another is refused by
    /// `claw workflow validate`); empty means any.
    models: Vec<String>,
}

/// The LLM configuration (its `Debug` shows names, never values).
#[derive(Clone, Default)]
pub struct Config {
    entries: BTreeMap<String, Entry>,
    default: Option<String>,
    roles: BTreeMap<String, String>,
    fallback: Option<Vec<String>>,
    /// `max_tokens_per_run`: the most tokens (input and output) a run's llm steps may use.
    max_tokens_per_run: Option<u64>,
    /// The resolved settings the providers read (`*_API_KEY`, `*_BASE_URL`, `*_MODEL`, ...).
    settings: BTreeMap<String, (String, Source)>,
    /// The vault's values named by `api_key:` entries that are not settings.
    secrets: BTreeMap<String, String>,
    /// The file it was read from.
    pub path: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("providers", &self.entries.keys().collect::<Vec<_>>())
            .field("default", &self.default)
            .field("roles", &self.roles)
            .field("fallback", &self.fallback)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const PROVIDER_KEYS: &[&str] = &[
    "kind", "base_url", "model", "api_key", "command", "timeout", "models",
];
const SECTION_KEYS: &[&str] = &[
    "default",
    "roles",
    "fallback",
    "providers",
    "max_tokens_per_run",
];

impl Config {
    /// Reads `<root>/claw.yaml`'s `llm:` (every problem with its position) over the resolved
    /// settings; `secrets` are the vault's values (for `api_key:` names that are not settings).
    pub fn load(
        root: &Path,
        layers: &Layers,
        secrets: BTreeMap<String, String>,
    ) -> Result<Self, FileErrors> {
        let mut c = Self {
            settings: DEFS
                .iter()
                .filter_map(|d| {
                    let r = layers.get(*d);
                    r.value.map(|v| (d.name.to_owned(), (v, r.source)))
                })
                .collect(),
            secrets,
            ..Self::default()
        };
        let path = root.join("claw.yaml");
        if path.exists() {
            let src = yaml::read_file(
                &path,
                crate::config::settings::MAX_FILE_BYTES,
                "claw.yaml file",
            )?;
            let mut r = Reader::new();
            if let Some(section) = src.root.get("llm") {
                c.read(&mut r, section);
            }
            r.finish(&path, src.text)?;
            c.path = Some(path);
        }
        Ok(c)
    }

    /// A configuration from settings alone (tests, `claw llm` without a `claw.yaml`).
    pub fn from_settings(values: &[(&str, &str)]) -> Self {
        Self {
            settings: values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ((*v).to_owned(), Source::Env)))
                .collect(),
            ..Self::default()
        }
    }

    fn read(&mut self, r: &mut Reader, section: &Node) {
        for (key, node) in r.entries(section, SECTION_KEYS, "`llm`") {
            match key {
                "default" => self.default = r.string(node, "llm.default"),
                "roles" => {
                    for (role, n) in r.entries(node, &["chat", "job"], "`llm.roles`") {
                        if let Some(v) = r.string(n, role) {
                            self.roles.insert(role.to_owned(), v);
                        }
                    }
                }
                "fallback" => {
                    let list = r.string_list(node, "llm.fallback");
                    self.fallback = Some(list.into_iter().map(|(s, _)| s).collect());
                }
                "max_tokens_per_run" => {
                    self.max_tokens_per_run = r
                        .positive_int(node, "llm.max_tokens_per_run")
                        .map(u64::from);
                }
                "providers" => {
                    for (name, n) in r.entries(node, &[], "`llm.providers`") {
                        let e = Self::read_entry(r, name, n);
                        self.entries.insert(name.to_owned(), e);
                    }
                }
                _ => {}
            }
        }
        // Names used in the section must be providers.
        let known = self.names();
        let check = |r: &mut Reader, n: &Node, name: &str| {
            if !known.iter().any(|k| k == name) {
                r.err_help(
                    n.pos,
                    format!(
                        "unknown LLM provider `{name}` (known: {})",
                        known.join(", ")
                    ),
                    did_you_mean(name, known.iter().map(String::as_str)),
                );
            }
        };
        for (key, node) in r.entries(section, &[], "`llm`") {
            match key {
                "default" => {
                    if let Some(s) = node.as_str() {
                        check(r, node, s);
                    }
                }
                "roles" => {
                    for (_, n) in r.entries(node, &[], "`llm.roles`") {
                        if let Some(s) = n.as_str() {
                            check(r, n, s);
                        }
                    }
                }
                "fallback" => {
                    if let yaml::Value::Seq(items) = &node.value {
                        for n in items {
                            if let Some(s) = n.as_str() {
                                check(r, n, s);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn read_entry(r: &mut Reader, name: &str, node: &Node) -> Entry {
        let mut e = Entry::default();
        for (key, n) in r.entries(node, PROVIDER_KEYS, &format!("`llm.providers.{name}`")) {
            match key {
                "kind" => {
                    if let Some(k) = r.choice(n, "kind", ProviderKind::NAMES) {
                        e.kind = ProviderKind::parse(&k);
                    }
                }
                "base_url" => e.base_url = r.string(n, "base_url"),
                "model" => e.model = r.string(n, "model"),
                "api_key" => e.api_key = r.string(n, "api_key"),
                "command" => e.command = r.string(n, "command"),
                "timeout" => e.timeout = r.duration(n, "timeout"),
                "models" => {
                    e.models = r
                        .string_list(n, "models")
                        .into_iter()
                        .map(|(m, _)| m)
                        .collect();
                }
                _ => {}
            }
        }
        if e.kind.is_none() && ProviderKind::parse(canonical(name)).is_none() {
            r.err(
                node.pos,
                format!(
                    "provider `{name}` needs `kind:` (one of: {})",
                    ProviderKind::NAMES.join(", ")
                ),
            );
        }
        e
    }

    /// Every provider name: the built-in ones, then those `claw.yaml` declares.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = builtin_names().into_iter().map(str::to_owned).collect();
        for k in self.entries.keys() {
            if !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    }

    /// The canonical providers, for listings (built-in ones first).
    pub fn listed(&self) -> Vec<String> {
        let mut out: Vec<String> = ProviderKind::NAMES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for k in self.entries.keys() {
            let c = canonical(k).to_owned();
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .get(name)
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A setting set somewhere other than its built-in default.
    fn setting_set(&self, name: &str) -> Option<&str> {
        self.settings
            .get(name)
            .filter(|(v, s)| *s != Source::Default && !v.is_empty())
            .map(|(v, _)| v.as_str())
    }

    /// The provider named `name` (an alias or a `claw.yaml` entry), resolved.
    pub fn provider(&self, name: &str) -> Result<ProviderConfig, String> {
        let canon = canonical(name);
        let entry = self
            .entries
            .get(name)
            .or_else(|| self.entries.get(canon))
            .cloned()
            .unwrap_or_default();
        let Some(kind) = entry.kind.or_else(|| ProviderKind::parse(canon)) else {
            let known = self.names();
            return Err(format!(
                "unknown LLM provider `{name}` (known: {}){}",
                known.join(", "),
                did_you_mean(name, known.iter().map(String::as_str))
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default()
            ));
        };
        let (url_var, model_var, key_var, default_url, default_model) = match kind {
            ProviderKind::Anthropic => (
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_MODEL",
                Some("ANTHROPIC_API_KEY"),
                "https://api.anthropic.com",
                "claude-sonnet-4-5",
            ),
            ProviderKind::OpenAi => (
                "OPENAI_BASE_URL",
                "OPENAI_MODEL",
                Some("OPENAI_API_KEY"),
                "https://api.openai.com/v1",
                "gpt-4o",
            ),
            ProviderKind::Ollama => (
                "OLLAMA_BASE_URL",
                "OLLAMA_MODEL",
                None,
                "http://localhost:11434",
                "llama3",
            ),
            ProviderKind::ClaudeCli => ("", "", None, "", ""),
        };
        let base_url = entry
            .base_url
            .clone()
            .or_else(|| self.setting(url_var).map(str::to_owned))
            .unwrap_or_else(|| default_url.to_owned());
        let base_url = base_url.trim_end_matches('/').to_owned();
        // Ollama speaks the OpenAI format under /v1.
        let base_url = if kind == ProviderKind::Ollama && !base_url.ends_with("/v1") {
            format!("{base_url}/v1")
        } else {
            base_url
        };
        let model = entry
            .model
            .clone()
            .or_else(|| self.setting(model_var).map(str::to_owned))
            .unwrap_or_else(|| default_model.to_owned());
        let key_name = entry.api_key.clone().or(key_var.map(str::to_owned));
        let api_key = key_name.as_deref().and_then(|k| {
            self.setting(k)
                .map(str::to_owned)
                .or_else(|| self.secrets.get(k).cloned())
        });
        Ok(ProviderConfig {
            name: canon.to_owned(),
            kind,
            base_url,
            model,
            api_key,
            key_name,
            command: entry.command.unwrap_or_else(|| "claude".to_owned()),
            timeout: entry.timeout,
        })
    }

    /// The provider a role uses (see the module's notes).
    pub fn role_provider(&self, role: Role) -> String {
        let var = role.variable();
        let key = match role {
            Role::Chat => "chat",
            Role::Job => "job",
        };
        self.setting_set(var)
            .map(str::to_owned)
            .or_else(|| self.roles.get(key).cloned())
            .or_else(|| self.default.clone())
            .or_else(|| self.setting(var).map(str::to_owned))
            .unwrap_or_else(|| "claude".to_owned())
    }

    /// The default provider (`llm.default`, else the job role's).
    pub fn default_provider(&self) -> String {
        self.default
            .clone()
            .unwrap_or_else(|| self.role_provider(Role::Job))
    }

    /// The providers to ask, in order: `first` (else the role's), then the fallbacks.
    pub fn chain(&self, role: Role, first: Option<&str>) -> Vec<String> {
        let primary = first.map_or_else(|| self.role_provider(role), str::to_owned);
        let mut out = vec![canonical(&primary).to_owned()];
        let fallback_off = self
            .setting("LLM_FALLBACK")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "no"));
        if fallback_off {
            return out;
        }
        let listed: Vec<String> = match &self.fallback {
            Some(f) => f.clone(),
            None => self
                .setting_set("LLM_PROVIDERS")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        };
        for name in listed {
            let c = canonical(&name).to_owned();
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if self.fallback.is_none()
            && self.setting("OPENAI_API_KEY").is_some()
            && !out.iter().any(|n| n == "openai")
        {
            out.push("openai".to_owned());
        }
        out
    }

    /// The token budget of a run: `llm.max_tokens_per_run`, else the setting
    /// `LLM_MAX_TOKENS_PER_RUN` (environment, vault, `.env`); `None`: no limit.
    pub fn max_tokens_per_run(&self) -> Result<Option<u64>, String> {
        if let Some(n) = self.max_tokens_per_run {
            return Ok(Some(n));
        }
        match crate::config::env::var("LLM_MAX_TOKENS_PER_RUN") {
            Some(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| {
                    format!("LLM_MAX_TOKENS_PER_RUN must be a positive number of tokens, not `{v}`")
                }),
            _ => Ok(None),
        }
    }

    /// Whether `model` is one `provider` serves, when its entry lists `models:` (`Err` names the
    /// listed ones and the nearest).
    pub fn check_model(&self, provider: &str, model: &str) -> Result<(), String> {
        let entry = self
            .entries
            .get(provider)
            .or_else(|| self.entries.get(canonical(provider)));
        let Some(e) = entry.filter(|e| !e.models.is_empty()) else {
            return Ok(());
        };
        if e.models.iter().any(|m| m == model) {
            return Ok(());
        }
        Err(format!(
            "unknown model `{model}` for provider `{provider}` (its `models:` in claw.yaml: {}){}",
            e.models.join(", "),
            did_you_mean(model, e.models.iter().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        ))
    }

    /// The secret values it holds (registered with the redactor).
    pub fn secret_values(&self) -> Vec<String> {
        let mut out: Vec<String> = DEFS
            .iter()
            .filter(|d| d.secret)
            .filter_map(|d| self.setting(d.name).map(str::to_owned))
            .collect();
        out.extend(self.secrets.values().cloned());
        out
    }
}

/// Sets `llm.default` in `<root>/claw.yaml`, keeping the rest of the file as it is (a line
/// edited or added under `llm:`; the file is replaced atomically).
pub fn set_default(root: &Path, provider: &str) -> Result<PathBuf, String> {
    let path = root.join("claw.yaml");
    let text = if path.exists() {
        std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
    } else {
        String::new()
    };
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let llm_at = lines.iter().position(|l| l.trim_end() == "llm:");
    let new_line = format!("  default: {provider}");
    match llm_at {
        Some(i) => {
            let end = lines[i + 1..]
                .iter()
                .position(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with('#'))
                .map_or(lines.len(), |p| i + 1 + p);
            match (i + 1..end).find(|j| {
                lines[*j].trim_start().starts_with("default:")
                    && lines[*j].starts_with("  ")
                    && !lines[*j].starts_with("   ")
            }) {
                Some(j) => lines[j] = new_line,
                None => lines.insert(i + 1, new_line),
            }
        }
        None => {
            if lines.iter().any(|l| l.starts_with("llm:")) {
                return Err(format!(
                    "{}: `llm:` is not a block mapping; set `default:` by hand",
                    path.display()
                ));
            }
            lines.push("llm:".to_owned());
            lines.push(new_line);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    // The result must still read (nothing half-written, nothing broken).
    yaml::parse(&path, out.clone()).map_err(|e| e.render())?;
    crate::fsutil::AtomicWrite::new(&path, ".claw-yaml-")
        .mode(0o644)
        .write_with(|w| std::io::Write::write_all(w, out.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_roles_like_the_seed() {
        let c = Config::from_settings(&[]);
        assert_eq!(c.role_provider(Role::Job), "claude");
        assert_eq!(c.chain(Role::Job, None), vec!["claude-cli"]);
        let c = Config::from_settings(&[("OPENAI_API_KEY", "k"), ("JOB_MODEL", "gpt")]);
        assert_eq!(c.chain(Role::Job, None), vec!["openai"]);
        let c = Config::from_settings(&[("OPENAI_API_KEY", "k")]);
        assert_eq!(c.chain(Role::Chat, None), vec!["claude-cli", "openai"]);
        let c = Config::from_settings(&[("OPENAI_API_KEY", "k"), ("LLM_FALLBACK", "no")]);
        assert_eq!(c.chain(Role::Chat, None), vec!["claude-cli"]);
        let c = Config::from_settings(&[("LLM_PROVIDERS", "anthropic, ollama")]);
        assert_eq!(
            c.chain(Role::Job, Some("anthropic")),
            vec!["anthropic", "ollama"]
        );
    }

    #[test]
    fn models_lists_and_the_run_budget_are_read_with_positions() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("claw.yaml"),
            "llm:\n  max_tokens_per_run: 500\n  providers:\n    local: {kind: openai, models: [qwen2.5, llama3.1]}\n",
        )
        .expect("write");
        let c = Config::load(dir.path(), &Layers::default(), BTreeMap::new()).expect("load");
        assert_eq!(c.max_tokens_per_run(), Ok(Some(500)));
        assert_eq!(c.check_model("local", "llama3.1"), Ok(()));
        let e = c.check_model("local", "qwen25").expect_err("unknown");
        assert!(e.contains("did you mean `qwen2.5`"), "{e}");
        // A provider without `models:` takes any model.
        assert_eq!(c.check_model("anthropic", "anything"), Ok(()));
        std::fs::write(
            dir.path().join("claw.yaml"),
            "llm:\n  max_tokens_per_run: 0\n",
        )
        .expect("write");
        let e = Config::load(dir.path(), &Layers::default(), BTreeMap::new()).expect_err("zero");
        assert!(e.render().contains("claw.yaml:2:"), "{}", e.render());
    }

    #[test]
    fn providers_resolve_their_settings() {
        let c = Config::from_settings(&[
            ("OLLAMA_BASE_URL", "http://127.0.0.1:9/"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
        ]);
        let o = c.provider("ollama").expect("ollama");
        assert_eq!(o.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(o.model, "llama3");
        let a = c.provider("anthropic").expect("anthropic");
        assert_eq!(a.api_key.as_deref(), Some("sk-ant"));
        assert!(!format!("{a:?}").contains("sk-ant"));
        assert!(!format!("{c:?}").contains("sk-ant"));
        let e = c.provider("antropic").expect_err("unknown");
        assert!(e.contains("did you mean `anthropic`"), "{e}");
    }
}
