//! Settings resolution, in one place (DESIGN.md §3). Each setting has one name (the seed's
//! environment variable name) and its value comes from the first of:
//!
//! 1. a command-line flag,
//! 2. the environment,
//! 3. the vault (a secret of the same name),
//! 4. `.env` in the current directory (`KEY=VALUE` lines; never overrides the environment),
//! 5. `claw.yaml` in the config root, under `settings:`,
//! 6. the built-in default.
//!
//! `claw doctor` shows each value and where it came from, secrets masked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::FileErrors;
use crate::yaml::{self, Reader};

/// A setting claw knows.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub secret: bool,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    secret: bool,
    default: Option<&'static str>,
    help: &'static str,
) -> Def {
    Def {
        name,
        secret,
        default,
        help,
    }
}

/// The settings, with the seed's names and defaults.
pub const DEFS: &[Def] = &[
    def(
        "ANTHROPIC_API_KEY",
        true,
        None,
        "Anthropic Messages API key",
    ),
    def(
        "ANTHROPIC_BASE_URL",
        false,
        None,
        "Anthropic Messages API server (default https://api.anthropic.com)",
    ),
    def(
        "ANTHROPIC_MODEL",
        false,
        None,
        "model for the anthropic provider (default claude-sonnet-4-5)",
    ),
    def("OPENAI_API_KEY", true, None, "OpenAI-compatible API key"),
    def(
        "OPENAI_BASE_URL",
        false,
        None,
        "OpenAI-compatible server (Ollama, vLLM, llama.cpp)",
    ),
    def(
        "OPENAI_MODEL",
        false,
        Some("gpt-4o"),
        "model for the openai provider",
    ),
    def(
        "OLLAMA_BASE_URL",
        false,
        Some("http://localhost:11434"),
        "Ollama server",
    ),
    def(
        "OLLAMA_MODEL",
        false,
        Some("llama3"),
        "model for the ollama provider",
    ),
    def("CHAT_MODEL", false, Some("claude"), "provider for chat"),
    def(
        "JOB_MODEL",
        false,
        Some("claude"),
        "provider for jobs and llm steps",
    ),
    def(
        "LLM_FALLBACK",
        false,
        None,
        "false, 0 or no: never fall back to another LLM provider",
    ),
    def(
        "LLM_PROVIDERS",
        false,
        Some("claude"),
        "provider fallback chain",
    ),
    def("TELEGRAM_BOT_TOKEN", true, None, "Telegram Bot API token"),
    def(
        "TELEGRAM_DEFAULT_CHAT_ID",
        false,
        None,
        "default Telegram chat",
    ),
    def(
        "TELEGRAM_ADMIN_CHAT_ID",
        false,
        None,
        "Telegram chat that approves unknown chats",
    ),
    def(
        "TELEGRAM_WEBHOOK_SECRET",
        true,
        None,
        "secret token of the Telegram webhook",
    ),
    def(
        "TELEGRAM_WEBHOOK_URL",
        false,
        None,
        "public URL of claw's /webhook/telegram (set: webhook mode instead of polling)",
    ),
    def(
        "ALLOWED_CHAT_IDS",
        false,
        Some(""),
        "Telegram chats allowed to talk to claw (empty: nobody)",
    ),
    def("SLACK_BOT_TOKEN", true, None, "Slack Web API token"),
    def(
        "SLACK_SIGNING_SECRET",
        true,
        None,
        "Slack request signing secret",
    ),
    def("DISCORD_BOT_TOKEN", true, None, "Discord bot token"),
    def(
        "TELEGRAM_API_URL",
        false,
        None,
        "Telegram Bot API base URL (default https://api.telegram.org)",
    ),
    def(
        "SLACK_API_URL",
        false,
        None,
        "Slack Web API base URL (default https://slack.com/api)",
    ),
    def(
        "DISCORD_API_URL",
        false,
        None,
        "Discord API base URL (default https://discord.com/api/v10)",
    ),
    def(
        "NTFY_URL",
        false,
        None,
        "ntfy server (default https://ntfy.sh)",
    ),
    def("NTFY_TOKEN", true, None, "ntfy access token"),
    def("SMTP_HOST", false, None, "mail server"),
    def("SMTP_PORT", false, Some("587"), "mail server port"),
    def("SMTP_USER", false, None, "mail user"),
    def("SMTP_PASS", true, None, "mail password"),
    def("SMTP_FROM", false, None, "sender address"),
    def(
        "SMTP_TLS",
        false,
        None,
        "starttls, tls (implicit, the default on port 465) or none",
    ),
    def(
        "SMTP_TLS_VERIFY",
        false,
        Some("true"),
        "false accepts a self-signed mail server certificate",
    ),
    def("DASHBOARD_USER", false, None, "dashboard login"),
    def("DASHBOARD_PASS", true, None, "dashboard password"),
    def(
        "DASHBOARD_TLS_CERT",
        false,
        None,
        "PEM certificate chain: the daemon's listener serves HTTPS",
    ),
    def(
        "DASHBOARD_TLS_KEY",
        false,
        None,
        "PEM private key of DASHBOARD_TLS_CERT",
    ),
    def(
        "MCP_TOKEN",
        true,
        None,
        "bearer token of /mcp on the daemon (unset: /mcp refuses every request)",
    ),
    def(
        "CLAW_SKILL_HUB",
        false,
        None,
        "SkillHub: the git repository (URL or path) of `claw skill hub`",
    ),
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    Vault,
    DotEnv(PathBuf),
    ClawYaml(PathBuf),
    Default,
    Unset,
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Self::Flag => "command line".to_owned(),
            Self::Env => "environment".to_owned(),
            Self::Vault => "vault".to_owned(),
            Self::DotEnv(p) => p.display().to_string(),
            Self::ClawYaml(p) => format!("{} (settings:)", p.display()),
            Self::Default => "default".to_owned(),
            Self::Unset => "not set".to_owned(),
        }
    }
}

/// One resolved setting.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub def: Def,
    pub value: Option<String>,
    pub source: Source,
}

/// A file's settings, with the file they came from.
pub type FileLayer = (PathBuf, BTreeMap<String, String>);

/// The inputs of resolution, gathered once.
#[derive(Debug, Default)]
pub struct Layers {
    pub flags: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub vault: BTreeMap<String, String>,
    pub dotenv: Option<FileLayer>,
    pub claw_yaml: Option<FileLayer>,
}

impl Layers {
    /// The first layer that has `name`.
    pub fn get(&self, def: Def) -> Resolved {
        let name = def.name;
        let found = self
            .flags
            .get(name)
            .map(|v| (v.clone(), Source::Flag))
            .or_else(|| self.env.get(name).map(|v| (v.clone(), Source::Env)))
            .or_else(|| self.vault.get(name).map(|v| (v.clone(), Source::Vault)))
            .or_else(|| {
                let (p, m) = self.dotenv.as_ref()?;
                m.get(name).map(|v| (v.clone(), Source::DotEnv(p.clone())))
            })
            .or_else(|| {
                let (p, m) = self.claw_yaml.as_ref()?;
                m.get(name)
                    .map(|v| (v.clone(), Source::ClawYaml(p.clone())))
            })
            .or_else(|| def.default.map(|d| (d.to_owned(), Source::Default)));
        match found {
            Some((value, source)) => Resolved {
                def,
                value: Some(value),
                source,
            },
            None => Resolved {
                def,
                value: None,
                source: Source::Unset,
            },
        }
    }

    pub fn all(&self) -> Vec<Resolved> {
        DEFS.iter().map(|d| self.get(*d)).collect()
    }
}

/// The seed's `.env` parser: `KEY=VALUE` lines, `#` comments skipped, surrounding quotes
/// stripped, an optional `export ` prefix.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    out
}

/// `settings:` of `claw.yaml` (scalars only; other values are left to the sections that own
/// them). An error is the file's problems, one line each.
pub fn claw_yaml_settings(root: &Path) -> Result<Option<FileLayer>, String> {
    let path = root.join("claw.yaml");
    if !path.exists() {
        return Ok(None);
    }
    let headlines = |e: FileErrors| {
        e.diagnostics
            .iter()
            .map(crate::diagnostic::Diagnostic::headline)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let src = yaml::read_file(&path, super::settings::MAX_FILE_BYTES, "claw.yaml file")
        .map_err(headlines)?;
    let mut out = BTreeMap::new();
    if let Some(section) = src.root.get("settings") {
        let mut r = Reader::new();
        for (k, v) in r.entries(section, &[], "`settings`") {
            if let Some(v) = v.scalar_text() {
                out.insert(k.to_owned(), v);
            }
        }
        r.finish(&path, src.text).map_err(headlines)?;
    }
    Ok(Some((path, out)))
}

/// Gathers every layer: the process environment, `./.env`, `claw.yaml` and the vault's values
/// (read by the caller: the vault sits above this module; `vault::settings` is the usual way in),
/// or the reason they could not be read, which is returned beside the layers.
pub fn gather(
    root: &Path,
    flags: BTreeMap<String, String>,
    vault: Result<BTreeMap<String, String>, String>,
) -> (Layers, Vec<String>) {
    let mut notes = Vec::new();
    let env: BTreeMap<String, String> = DEFS
        .iter()
        .filter_map(|d| super::env::var(d.name).map(|v| (d.name.to_owned(), v)))
        .collect();
    let dotenv = std::env::current_dir().ok().and_then(|cwd| {
        let p = cwd.join(".env");
        std::fs::read_to_string(&p)
            .ok()
            .map(|t| (p, parse_dotenv(&t)))
    });
    let claw_yaml = claw_yaml_settings(root).unwrap_or_else(|e| {
        notes.push(e);
        None
    });
    let vault = vault.unwrap_or_else(|e| {
        notes.push(format!("the vault was not read: {e}"));
        BTreeMap::new()
    });
    (
        Layers {
            flags,
            env,
            vault,
            dotenv,
            claw_yaml,
        },
        notes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str) -> Def {
        *DEFS.iter().find(|d| d.name == name).expect("known")
    }

    #[test]
    fn the_order_is_flag_env_vault_dotenv_file_default() {
        let mut l = Layers::default();
        let name = "SMTP_PORT";
        let set = |m: &mut BTreeMap<String, String>, v: &str| {
            m.insert(name.to_owned(), v.to_owned());
        };
        assert_eq!(l.get(d(name)).source, Source::Default);
        l.claw_yaml = Some((PathBuf::from("claw.yaml"), BTreeMap::new()));
        set(&mut l.claw_yaml.as_mut().expect("set").1, "1");
        assert_eq!(l.get(d(name)).value.as_deref(), Some("1"));
        l.dotenv = Some((PathBuf::from(".env"), BTreeMap::new()));
        set(&mut l.dotenv.as_mut().expect("set").1, "2");
        assert_eq!(l.get(d(name)).value.as_deref(), Some("2"));
        set(&mut l.vault, "3");
        assert_eq!(l.get(d(name)).source, Source::Vault);
        set(&mut l.env, "4");
        assert_eq!(l.get(d(name)).source, Source::Env);
        set(&mut l.flags, "5");
        assert_eq!(l.get(d(name)).value.as_deref(), Some("5"));
        assert_eq!(l.get(d("SMTP_HOST")).source, Source::Unset);
    }

    #[test]
    fn dotenv_like_the_seed() {
        let m = parse_dotenv("# c\nA=1\nexport B=\"two words\"\nC='x=y'\nnot a line\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x=y");
        assert_eq!(m.len(), 3);
    }
}
