//! `policies.yaml`: read through `yaml::Reader` (every problem with its position), merged over
//! the built-in rules.

use std::path::{Path, PathBuf};

use super::{Action, Matcher, Policies, Rule, Scope, builtin};
use crate::diagnostic::FileErrors;
use crate::yaml::{Node, Reader, Value};

pub const FILE_NAME: &str = "policies.yaml";
const MAX_BYTES: u64 = 1 << 20;
const TOP_KEYS: &[&str] = &["rules", "policies"];
const RULE_KEYS: &[&str] = &[
    "name",
    "action",
    "command",
    "file",
    "secret",
    "pattern",
    "scope",
    "type",
    "reason",
    "description",
    "enabled",
];
const ACTIONS: &[&str] = &["deny", "require_approval", "allow"];
const SCOPES: &[&str] = &["command", "file", "secret", "output"];

/// `policies.yaml` in the config root, else in the data directory (as `hosts.yaml`).
pub fn find(root: &Path, home: &Path) -> Option<PathBuf> {
    // One look when the data directory is the config root (CLAW_HOME=CLAW_ROOT): this runs
    // before every command a step starts.
    let home = (home != root).then_some(home);
    std::iter::once(root)
        .chain(home)
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file())
}

/// The built-in rules with the file's over them (the built-ins alone without a file).
pub fn load(root: &Path, home: &Path) -> Result<Policies, FileErrors> {
    load_shared(root, home).map(|p| (*p).clone())
}

/// [`load`], shared: the file is read again only when it changed (another path, size,
/// modification time or inode). The check runs before every command, so it costs a `stat`,
/// not a parse and regex compiles, and every check shares the regexes' match caches.
pub(super) fn load_shared(
    root: &Path,
    home: &Path,
) -> Result<std::sync::Arc<Policies>, FileErrors> {
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::Arc;
    type Stamp = (PathBuf, u64, i64, i64, u64);
    static LAST: std::sync::Mutex<Option<(Stamp, Arc<Policies>)>> = std::sync::Mutex::new(None);
    let Some(path) = find(root, home) else {
        return Ok(super::builtin::builtin_shared());
    };
    let stamp = std::fs::metadata(&path)
        .ok()
        .map(|m| (path.clone(), m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
    if let Some(stamp) = &stamp
        && let Some((seen, policies)) = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        && seen == stamp
    {
        return Ok(policies.clone());
    }
    let policies = Arc::new(load_file(&path)?);
    if let Some(stamp) = stamp {
        *LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((stamp, policies.clone()));
    }
    Ok(policies)
}

fn load_file(path: &Path) -> Result<Policies, FileErrors> {
    let path = path.to_path_buf();
    let src = crate::yaml::read_file(&path, MAX_BYTES, "policies file")?;
    let mut r = Reader::new();
    let policies = read(&mut r, &src.root, &path);
    r.finish(&path, src.text)?;
    Ok(policies)
}

/// Parses text as if it were `path`.
pub fn parse(path: &Path, text: &str) -> Result<Policies, FileErrors> {
    let src = crate::yaml::parse(path, text.to_owned())?;
    let mut r = Reader::new();
    let policies = read(&mut r, &src.root, path);
    r.finish(path, src.text)?;
    Ok(policies)
}

/// The matcher of a pattern in a scope (a regex, or a glob for files).
pub(super) fn matcher(scope: Scope, pattern: &str) -> Result<Matcher, String> {
    match scope {
        Scope::File => {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid glob: {e}"))?;
            Ok(Matcher::Glob {
                glob: std::sync::Arc::new(super::LazyGlob::new(glob)),
                name_only: !pattern.contains('/'),
            })
        }
        Scope::Command | Scope::Secret => regex::Regex::new(pattern)
            .map(Matcher::Regex)
            .map_err(|e| format!("invalid regex: {e}")),
    }
}

fn read(r: &mut Reader, root: &Node, path: &Path) -> Policies {
    let mut policies = builtin();
    policies.file = Some(path.to_path_buf());
    if root.value == Value::Null {
        return policies;
    }
    let file = path.file_name().map_or_else(
        || FILE_NAME.to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (_, list) in r.entries(root, TOP_KEYS, FILE_NAME) {
        let items = match &list.value {
            Value::Seq(items) => items.as_slice(),
            Value::Null => &[],
            _ => {
                r.err(
                    list.pos,
                    format!("`rules` must be a list of rules, found {}", list.kind()),
                );
                continue;
            }
        };
        for item in items {
            let Some(rule) = read_rule(r, item, &policies, &file) else {
                continue;
            };
            if let Some((_, line)) = seen.iter().find(|(n, _)| *n == rule.name) {
                r.err(
                    item.pos,
                    format!(
                        "rule `{}` is defined twice (the first one is at line {line})",
                        rule.name
                    ),
                );
                continue;
            }
            seen.push((rule.name.clone(), item.pos.line));
            match policies.rules.iter_mut().find(|x| x.name == rule.name) {
                Some(existing) => *existing = rule,
                None => policies.rules.push(rule),
            }
        }
    }
    policies
}

fn read_rule(r: &mut Reader, node: &Node, current: &Policies, file: &str) -> Option<Rule> {
    let entries = r.entries(node, RULE_KEYS, "a policy rule");
    if !matches!(node.value, Value::Map(_)) {
        return None;
    }
    let mut name = None;
    let mut action = None;
    let mut scope: Option<(Scope, crate::diagnostic::Pos)> = None;
    let mut pattern: Option<(String, crate::diagnostic::Pos)> = None;
    let mut reason = None;
    let mut enabled = true;
    let mut given: Vec<(Option<Scope>, &Node, &str)> = Vec::new();
    for (k, v) in entries {
        match k {
            "name" => name = r.string(v, "name").filter(|n| !n.trim().is_empty()),
            "action" => {
                action = r.choice(v, "action", ACTIONS).map(|a| match a.as_str() {
                    "deny" => Action::Deny,
                    "allow" => Action::Allow,
                    _ => Action::RequireApproval,
                });
            }
            "command" => given.push((Some(Scope::Command), v, k)),
            "file" => given.push((Some(Scope::File), v, k)),
            "secret" => given.push((Some(Scope::Secret), v, k)),
            "pattern" => given.push((None, v, k)),
            "scope" | "type" => {
                if let Some(s) = r.choice(v, k, SCOPES) {
                    let s = match s.as_str() {
                        "file" => Scope::File,
                        "secret" | "output" => Scope::Secret,
                        _ => Scope::Command,
                    };
                    scope = Some((s, v.pos));
                }
            }
            "reason" | "description" => reason = r.string(v, k),
            "enabled" => enabled = r.boolean(v, "enabled").unwrap_or(true),
            _ => {}
        }
    }
    for (i, (s, v, k)) in given.iter().enumerate() {
        if i > 0 {
            r.err(
                v.pos,
                "a rule has one pattern: `command`, `file`, `secret` or `pattern` (with `scope`)",
            );
            continue;
        }
        if let Some(text) = r.string(v, k) {
            pattern = Some((text, v.pos));
            if let Some(s) = s {
                scope = Some((*s, v.pos));
            }
        }
    }
    let Some(name) = name else {
        r.err(node.pos, "a policy rule needs a `name`");
        return None;
    };
    let base = current.rules.iter().find(|x| x.name == name && x.builtin);
    let origin = format!("{file}:{}", node.pos.line);
    let Some((pattern, ppos)) = pattern.or_else(|| base.map(|b| (b.pattern.clone(), node.pos)))
    else {
        r.err(
            node.pos,
            format!(
                "rule `{name}` needs a pattern: `command: REGEX`, `file: GLOB` or `secret: REGEX`"
            ),
        );
        return None;
    };
    let scope = scope
        .map(|(s, _)| s)
        .or(base.map(|b| b.scope))
        .unwrap_or(Scope::Command);
    let Some(action) = action.or(base.map(|b| b.action)) else {
        r.err(
            node.pos,
            format!("rule `{name}` needs an `action` (deny, require_approval or allow)"),
        );
        return None;
    };
    // A built-in rule whose pattern the file keeps keeps its (lazily compiled) matcher.
    let kept = base.filter(|b| b.pattern == pattern && b.scope == scope);
    let matcher = match kept.map_or_else(|| matcher(scope, &pattern), |b| Ok(b.matcher.clone())) {
        Ok(m) => m,
        Err(e) => {
            r.err(ppos, format!("rule `{name}`: {e}"));
            return None;
        }
    };
    Some(Rule {
        name,
        scope,
        action,
        pattern,
        matcher,
        reason: reason
            .or_else(|| base.map(|b| b.reason.clone()))
            .unwrap_or_default(),
        builtin: base.is_some(),
        enabled,
        origin,
    })
}
