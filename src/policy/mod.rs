//! Command policies: the seed's policy engine (deny / require_approval rules on command regexes,
//! file globs and secret patterns), read from `policies.yaml` and enforced on the rendered
//! command before it runs, wherever a command runs.
//!
//! ```yaml
//! # policies.yaml (config root, else the data directory)
//! rules:
//!   - name: no-drop-database
//!     action: deny                     # deny | require_approval | allow
//!     command: '(?i)\bdrop\s+database\b' # a regex on the rendered command
//!     reason: production databases are dropped by hand
//!   - name: ssh-private-key           # a file glob (ssh uploads; `claw policy check-file`)
//!     action: deny
//!     file: "**/.ssh/id_*"
//!   - name: rm-rf-root                # a built-in's name: this entry overrides it
//!     enabled: false
//! ```
//!
//! Built-in rules ([`builtin`]) are on unless a rule of the same name overrides them. The
//! decision on a command: any `deny` rule that matches wins; else an `allow` rule that matches
//! lets it through; else any `require_approval` rule that matches makes it wait for a person.
//!
//! [`gate`] is the one entry point for every place a command runs (shell, ssh and skill steps,
//! cron jobs, watcher actions, chat triggers, LLM tool calls): it loads the current rules,
//! decides, and audits every decision a rule made.

mod builtin;
mod load;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use builtin::builtin;
pub use load::{FILE_NAME, find, load, parse};

use crate::audit::{Action as AuditAction, AuditLog, Event};
use crate::diagnostic::FileErrors;

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A regex on the rendered command.
    Command,
    /// A glob on a file path.
    File,
    /// A regex for a secret's shape, looked for in a command's text and in output.
    Secret,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::File => "file",
            Self::Secret => "secret",
        }
    }
}

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    RequireApproval,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::RequireApproval => "require_approval",
        }
    }
}

/// How a rule matches.
#[derive(Debug, Clone)]
pub enum Matcher {
    Regex(regex::Regex),
    /// A built-in regex, compiled the first time a text holds one of its literals.
    Lazy(std::sync::Arc<LazyRegex>),
    /// A glob on the whole path, or (a pattern without `/`) on the file's name.
    Glob {
        glob: std::sync::Arc<LazyGlob>,
        name_only: bool,
    },
}

/// A glob checked when it is read and compiled (into a regex) the first time a path is tested:
/// most commands test none, and the compilation costs more than a short run's other checks.
#[derive(Debug)]
pub struct LazyGlob {
    glob: globset::Glob,
    compiled: std::sync::OnceLock<globset::GlobMatcher>,
}

impl LazyGlob {
    pub(crate) fn new(glob: globset::Glob) -> Self {
        Self {
            glob,
            compiled: std::sync::OnceLock::new(),
        }
    }

    fn is_match(&self, path: impl AsRef<Path>) -> bool {
        self.compiled
            .get_or_init(|| self.glob.compile_matcher())
            .is_match(path)
    }

    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

/// A regex compiled on first use, gated by literals one of which every match contains.
#[derive(Debug)]
pub struct LazyRegex {
    pattern: &'static str,
    needs: &'static [&'static str],
    compiled: std::sync::OnceLock<Option<regex::Regex>>,
}

impl LazyRegex {
    pub(crate) const fn new(pattern: &'static str, needs: &'static [&'static str]) -> Self {
        Self {
            pattern,
            needs,
            compiled: std::sync::OnceLock::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// The compiled regex when `text` could match (holds one of the literals).
    fn for_text(&self, text: &str) -> Option<&regex::Regex> {
        if !self.needs.iter().any(|n| text.contains(n)) {
            return None;
        }
        self.compiled
            .get_or_init(|| regex::Regex::new(self.pattern).ok())
            .as_ref()
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub scope: Scope,
    pub action: Action,
    /// The pattern as written.
    pub pattern: String,
    pub matcher: Matcher,
    pub reason: String,
    /// A built-in rule (possibly changed by the file).
    pub builtin: bool,
    pub enabled: bool,
    /// Where it comes from: `built-in`, or `policies.yaml:LINE`.
    pub origin: String,
}

impl Rule {
    fn matches_text(&self, text: &str) -> bool {
        match &self.matcher {
            Matcher::Regex(re) => re.is_match(text),
            Matcher::Lazy(lazy) => lazy.for_text(text).is_some_and(|re| re.is_match(text)),
            Matcher::Glob { .. } => false,
        }
    }

    fn matches_path(&self, path: &Path) -> bool {
        match &self.matcher {
            Matcher::Glob { glob, name_only } => {
                let path = expand_home(path);
                if *name_only {
                    path.file_name().is_some_and(|n| glob.is_match(n))
                } else {
                    glob.is_match(&path)
                }
            }
            Matcher::Regex(_) | Matcher::Lazy(_) => false,
        }
    }
}

/// `~/x` as `$HOME/x`.
fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => crate::config::env::var("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| path.to_path_buf()),
        Err(_) => path.to_path_buf(),
    }
}

/// What is about to happen, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A command as it will run (rendered).
    Command(String),
    /// A local file that a step reads or sends away (an SSH upload's source).
    File(PathBuf),
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Self::Command(c) => c.clone(),
            Self::File(p) => p.display().to_string(),
        }
    }
}

/// The rules in force.
#[derive(Debug, Clone)]
pub struct Policies {
    pub rules: Vec<Rule>,
    /// The file they were read from, if any.
    pub file: Option<PathBuf>,
}

/// A decision on one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule objects (`by`: the `allow` rule that let it through, if one did).
    Allow {
        by: Option<String>,
    },
    Deny {
        rule: String,
        reason: String,
    },
    RequireApproval {
        rule: String,
        reason: String,
    },
}

impl Verdict {
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Allow { by } => by.as_deref(),
            Self::Deny { rule, .. } | Self::RequireApproval { rule, .. } => Some(rule),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allow",
            Self::Deny { .. } => "deny",
            Self::RequireApproval { .. } => "require_approval",
        }
    }

    fn severity(&self) -> u8 {
        match self {
            Self::Allow { by: None } => 0,
            Self::Allow { by: Some(_) } => 1,
            Self::RequireApproval { .. } => 2,
            Self::Deny { .. } => 3,
        }
    }
}

/// A secret-shaped match in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: String,
    pub action: Action,
    /// Byte offsets of the match.
    pub start: usize,
    pub end: usize,
}

impl Policies {
    /// The rules that apply (enabled ones).
    fn active(&self, scope: Scope) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(move |r| r.enabled && r.scope == scope)
    }

    fn decide<'a>(matching: impl Iterator<Item = &'a Rule>) -> Verdict {
        let mut allow = None;
        let mut approval = None;
        for r in matching {
            match r.action {
                Action::Deny => {
                    return Verdict::Deny {
                        rule: r.name.clone(),
                        reason: r.reason.clone(),
                    };
                }
                Action::Allow => {
                    allow.get_or_insert_with(|| r.name.clone());
                }
                Action::RequireApproval => {
                    approval.get_or_insert_with(|| (r.name.clone(), r.reason.clone()));
                }
            }
        }
        match (allow, approval) {
            (Some(by), _) => Verdict::Allow { by: Some(by) },
            (None, Some((rule, reason))) => Verdict::RequireApproval { rule, reason },
            (None, None) => Verdict::Allow { by: None },
        }
    }

    /// The decision on a command: its command rules and its secret rules (a credential written
    /// into a command).
    pub fn check_command(&self, command: &str) -> Verdict {
        Self::decide(
            self.active(Scope::Command)
                .chain(self.active(Scope::Secret))
                .filter(|r| r.matches_text(command)),
        )
    }

    /// The decision on a file path.
    pub fn check_file(&self, path: &Path) -> Verdict {
        Self::decide(self.active(Scope::File).filter(|r| r.matches_path(path)))
    }

    /// Every secret-shaped match in `text`.
    pub fn scan_output(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in self.active(Scope::Secret) {
            let re = match &r.matcher {
                Matcher::Regex(re) => Some(re),
                Matcher::Lazy(lazy) => lazy.for_text(text),
                Matcher::Glob { .. } => None,
            };
            if let Some(re) = re {
                for m in re.find_iter(text) {
                    out.push(Finding {
                        rule: r.name.clone(),
                        action: r.action,
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        }
        out.sort_by_key(|f| (f.start, f.end));
        out
    }

    /// The decision on several subjects: the most severe one.
    pub fn check<'s>(&self, subjects: &'s [Subject]) -> (Verdict, Option<&'s Subject>) {
        let mut worst = (Verdict::Allow { by: None }, None);
        for s in subjects {
            let v = match s {
                Subject::Command(c) => self.check_command(c),
                Subject::File(p) => self.check_file(p),
            };
            if v.severity() > worst.0.severity() {
                worst = (v, Some(s));
            }
        }
        worst
    }
}

/// Where the process finds its rules and its audit log ([`install`]).
#[derive(Debug, Clone)]
struct Place {
    root: PathBuf,
    home: PathBuf,
}

static INSTALLED: OnceLock<Place> = OnceLock::new();

/// Tells the process where its `policies.yaml` and audit log are (the CLI does, once, after
/// resolving its directories). Without it only the built-in rules apply and nothing is audited.
pub fn install(root: &Path, home: &Path) {
    let _ = INSTALLED.set(Place {
        root: root.to_path_buf(),
        home: home.to_path_buf(),
    });
}

/// The rules in force now (read again at every call: an edit applies to the next command).
pub fn current() -> Result<std::sync::Arc<Policies>, FileErrors> {
    match INSTALLED.get() {
        Some(p) => load::load_shared(&p.root, &p.home),
        None => Ok(builtin::builtin_shared()),
    }
}

/// What [`gate`] says to the place about to run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Allow,
    /// Refused: never start it. The message names the rule.
    Deny(String),
    /// A person must approve first. `message` names the rule and the command.
    RequireApproval {
        rule: String,
        message: String,
    },
}

/// The one policy check of every place a command runs: `place` says which (`workflow step`,
/// `cron job`, `watcher action`, `skill`, `chat trigger`, `llm tool`), `target` what (a
/// run/step, a job id, …), `actor` who started it. Loads the current rules (an invalid
/// `policies.yaml` refuses every command, naming the file's problems: a broken policy never
/// lets everything through), decides on every subject, and audits every decision a rule made.
pub fn gate(place: &str, actor: &str, target: &str, subjects: &[Subject]) -> Gate {
    if subjects.is_empty() {
        return Gate::Allow;
    }
    let policies = match current() {
        Ok(p) => p,
        Err(e) => {
            let path = e.path.display().to_string();
            audit(
                actor,
                AuditAction::PolicyDenied,
                target,
                "denied",
                serde_json::json!({"place": place, "rule": path, "reason": "invalid policies file"}),
            );
            return Gate::Deny(format!(
                "refused: the policies file is invalid, so no command runs until it is fixed:\n{}",
                e.render()
            ));
        }
    };
    let (verdict, subject) = policies.check(subjects);
    let what = subject.map(Subject::describe).unwrap_or_default();
    let what = crate::redact::global().redact(&what).into_owned();
    let detail = |rule: &str| {
        serde_json::json!({
            "place": place,
            "rule": rule,
            "decision": verdict.as_str(),
            "command": what,
        })
    };
    match &verdict {
        Verdict::Allow { by: None } => Gate::Allow,
        Verdict::Allow { by: Some(rule) } => {
            audit(
                actor,
                AuditAction::PolicyAllowed,
                target,
                "allowed",
                detail(rule),
            );
            Gate::Allow
        }
        Verdict::Deny { rule, reason } => {
            audit(
                actor,
                AuditAction::PolicyDenied,
                target,
                "denied",
                detail(rule),
            );
            Gate::Deny(format!(
                "refused by policy `{rule}`{}: `{what}`",
                because(reason)
            ))
        }
        Verdict::RequireApproval { rule, reason } => {
            audit(
                actor,
                AuditAction::PolicyApprovalRequired,
                target,
                "approval_required",
                detail(rule),
            );
            Gate::RequireApproval {
                rule: rule.clone(),
                message: format!(
                    "policy `{rule}`{} needs approval to run `{what}`",
                    because(reason)
                ),
            }
        }
    }
}

/// The text of a gate that cannot wait for a person (a cron job, a watcher action, a skill run
/// from the command line: there is no run to hold): it is refused, naming the rule.
pub fn refuse_without_run(rule: &str, message: &str) -> String {
    format!(
        "refused: {message}, and this command has no run that could wait for it (run it from a workflow to get an approval gate, or add an `allow` rule for `{rule}` to policies.yaml)"
    )
}

fn because(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

fn audit(actor: &str, action: AuditAction, target: &str, outcome: &str, detail: serde_json::Value) {
    let Some(p) = INSTALLED.get() else {
        return;
    };
    let event = Event::new(actor, action, target, outcome, detail);
    if let Err(e) = AuditLog::in_dir(&p.home).record(&event) {
        tracing::warn!(error = %e, "policy decision not audited");
    }
}
