//! The built-in rules: what a homelab user wants asked about before it runs. Each one is
//! overridden by a rule of the same name in `policies.yaml` (`enabled: false`, another
//! `action`, another pattern).

use super::{Action, Policies, Rule, Scope};

/// One built-in rule: `(name, scope, action, pattern, reason, literals)`.
///
/// The literals of a regex rule: one of them is in every text the pattern matches, so a text
/// holding none cannot match and the rule is neither compiled nor run on it (a regex's
/// compilation costs more than the checks of a short-lived `claw workflow run`; most commands
/// hold none of these). `literals_are_necessary` in the tests checks each against its pattern.
///
/// The patterns use ASCII classes (`[0-9]`, not `\d`) where Unicode ones would only make the
/// compiled program larger: a shell splits words on ASCII blanks, and tokens are ASCII.
pub(super) type BuiltinRule = (
    &'static str,
    Scope,
    Action,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// The built-in rules.
pub(super) const RULES: &[BuiltinRule] = &[
    (
        "rm-rf-root",
        Scope::Command,
        Action::RequireApproval,
        r#"\brm\s+(?:-\S+\s+)*(?:-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)\s+(?:-\S+\s+)*["']?(?:/|/\*|~/?|\$HOME/?|\$\{HOME\}/?)["']?(?:[\s;&|)]|$)"#,
        "recursive delete of /, /* or the home directory",
        &["rm"],
    ),
    (
        "mkfs",
        Scope::Command,
        Action::RequireApproval,
        r"(?:^|[\s;&|(])(?:sudo\s+)?mkfs(?:\.[a-z0-9]+)?\b",
        "creating a filesystem erases a disk",
        &["mkfs"],
    ),
    (
        "dd-to-disk",
        Scope::Command,
        Action::RequireApproval,
        r"\bdd\b[^;&|]*\bof=/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk|mapper/)",
        "dd onto a block device",
        &["of=/dev/"],
    ),
    (
        "redirect-to-disk",
        Scope::Command,
        Action::RequireApproval,
        r">\s*/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|nvme\d|mmcblk\d)",
        "writing onto a block device",
        &["/dev/"],
    ),
    (
        "curl-pipe-shell",
        Scope::Command,
        Action::RequireApproval,
        r"\b(?:curl|wget)\b[^|;&]*\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:ba|z|da|k|fi)?sh\b",
        "running a script straight from the network",
        &["curl", "wget"],
    ),
    (
        "fork-bomb",
        Scope::Command,
        Action::RequireApproval,
        r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:",
        "a fork bomb",
        &[":()"],
    ),
    (
        "chmod-777-root",
        Scope::Command,
        Action::RequireApproval,
        r"\bchmod\s+(?:-\S+\s+)*0?777\s+/(?:[\s;&|]|$)",
        "world-writable /",
        &["chmod"],
    ),
    (
        "ssh-private-key",
        Scope::File,
        Action::RequireApproval,
        "**/.ssh/id_*",
        "an SSH private key",
        &[],
    ),
    (
        "shadow-file",
        Scope::File,
        Action::RequireApproval,
        "/etc/shadow",
        "the system's password hashes",
        &[],
    ),
    (
        "private-key-block",
        Scope::Secret,
        Action::RequireApproval,
        r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----",
        "a private key",
        &["PRIVATE KEY-----"],
    ),
    (
        "aws-access-key",
        Scope::Secret,
        Action::RequireApproval,
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        "an AWS access key id",
        &["AKIA", "ASIA"],
    ),
    (
        "github-token",
        Scope::Secret,
        Action::RequireApproval,
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})\b",
        "a GitHub token",
        &["gh", "github_pat_"],
    ),
    (
        "slack-token",
        Scope::Secret,
        Action::RequireApproval,
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
        "a Slack token",
        &["xox"],
    ),
    (
        "telegram-bot-token",
        Scope::Secret,
        Action::RequireApproval,
        r"\b[0-9]{8,10}:AA[A-Za-z0-9_-]{33}\b",
        "a Telegram bot token",
        &[":AA"],
    ),
];

/// The built-in rules alone.
pub fn builtin() -> Policies {
    (*builtin_shared()).clone()
}

/// The built-in rules, compiled once per process and shared (a clone of a regex starts with
/// empty match caches, so the checks made before every command share one copy).
pub(super) fn builtin_shared() -> std::sync::Arc<Policies> {
    static COMPILED: std::sync::LazyLock<std::sync::Arc<Policies>> =
        std::sync::LazyLock::new(|| std::sync::Arc::new(compile()));
    COMPILED.clone()
}

/// A fresh compilation (nothing shared with other tests).
#[cfg(test)]
pub(super) fn compile_for_test() -> Policies {
    compile()
}

fn compile() -> Policies {
    let rules = RULES
        .iter()
        .filter_map(|(name, scope, action, pattern, reason, needs)| {
            let matcher = match scope {
                Scope::Command | Scope::Secret if !needs.is_empty() => {
                    super::Matcher::Lazy(std::sync::Arc::new(super::LazyRegex::new(pattern, needs)))
                }
                _ => super::load::matcher(*scope, pattern).ok()?,
            };
            Some(Rule {
                name: (*name).to_owned(),
                scope: *scope,
                action: *action,
                pattern: (*pattern).to_owned(),
                matcher,
                reason: (*reason).to_owned(),
                builtin: true,
                enabled: true,
                origin: "built-in".to_owned(),
            })
        })
        .collect();
    Policies { rules, file: None }
}
