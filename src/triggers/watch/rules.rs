//! `watchers.yaml`: the seed's list of file watcher rules, checked with every problem reported at
//! once (file, line, column, a "did you mean").
//!
//! ```yaml
//! - name: torrent-mover
//!   path: ~/Downloads/*.torrent     # a directory, or a directory + a file-name glob
//!   events: [created]               # created | modified | deleted | moved (default [created])
//!   action: move                    # shell | skill | workflow | move | copy
//!   command: /mnt/data/torrents/watch/
//!   args: {}                        # WATCHER_<KEY> for shell, params for workflow
//!   enabled: true
//!   recursive: false                # claw: also watch subdirectories
//!   ignore: ["*.part", ".git/**"]   # claw: globs never acted on
//!   debounce: 500ms                 # claw: quiet time before a path's changes are reported
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use crate::config::Dirs;
use crate::diagnostic::{FileErrors, Pos, did_you_mean};
use crate::time::duration;
use crate::yaml::{self, Node, Reader, Value};

/// The file name, in the config root (or, as the seed kept it, the data directory).
pub const FILE_NAME: &str = "watchers.yaml";

/// `watchers.yaml` files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// How long a path must be quiet before its changes are reported, unless a rule says otherwise.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);

/// How long a shell action may run (the seed's 300 s).
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(300);

const RULE_KEYS: &[&str] = &[
    "name",
    "path",
    "events",
    "action",
    "command",
    "args",
    "enabled",
    "recursive",
    "ignore",
    "debounce",
];

/// What happened to a file, after debouncing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Created,
    Modified,
    Deleted,
    Moved,
}

impl EventKind {
    pub const ALL: [Self; 4] = [Self::Created, Self::Modified, Self::Deleted, Self::Moved];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Moved => "moved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// `/bin/sh -c command`, with `WATCHER_FILE`, `WATCHER_EVENT`, `WATCHER_<ARG>`.
    Shell,
    /// Runs the skill named by `command` with `args` plus `file=<path>`.
    Skill,
    /// Starts the workflow named by `command` with `args` as params; `trigger.path`, `trigger.event`.
    Workflow,
    /// Moves the file into the directory `command` (created if needed), keeping its name.
    Move,
    /// Copies the file (with its permissions and times) into the directory `command`.
    Copy,
}

impl ActionKind {
    pub const ALL: [Self; 5] = [
        Self::Shell,
        Self::Skill,
        Self::Workflow,
        Self::Move,
        Self::Copy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Skill => "skill",
            Self::Workflow => "workflow",
            Self::Move => "move",
            Self::Copy => "copy",
        }
    }
}

/// One rule, ready to watch.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `path:` as written.
    pub path: String,
    /// The directory watched (`~` expanded, relative paths from the config root).
    pub dir: PathBuf,
    /// The file-name glob of `path:` (`*.torrent` in `~/Downloads/*.torrent`), if any.
    pub pattern: Option<String>,
    glob: Option<GlobMatcher>,
    pub events: Vec<EventKind>,
    pub action: ActionKind,
    pub command: String,
    /// `args:` (scalars as text; workflow actions get them as params).
    pub args: Vec<(String, serde_json::Value)>,
    pub enabled: bool,
    pub recursive: bool,
    pub ignore: Vec<String>,
    ignore_set: GlobSet,
    pub debounce: Duration,
    /// Where the rule starts in the file.
    pub pos: Pos,
}

impl Rule {
    /// Whether `path` (a file under [`Rule::dir`]) is one this rule acts on: inside the watched
    /// directory (directly, or at any depth when recursive), matching the glob, not ignored.
    pub fn matches(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.dir) else {
            return false;
        };
        if rel.as_os_str().is_empty() || (!self.recursive && rel.components().count() != 1) {
            return false;
        }
        let Some(file_name) = rel.file_name() else {
            return false;
        };
        if let Some(glob) = &self.glob
            && !glob.is_match(file_name)
        {
            return false;
        }
        !self.is_ignored(rel)
    }

    /// `ignore:` globs: one without `/` matches the file name (or any directory name on the way),
    /// one with `/` matches the path relative to the watched directory.
    fn is_ignored(&self, rel: &Path) -> bool {
        if self.ignore_set.is_empty() {
            return false;
        }
        self.ignore_set.is_match(rel) || rel.iter().any(|part| self.ignore_set.is_match(part))
    }

    pub fn wants(&self, event: EventKind) -> bool {
        self.events.contains(&event)
    }

    /// The rule in the shape `claw watcher list --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "path": self.path,
            "dir": self.dir,
            "pattern": self.pattern,
            "events": self.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            "action": self.action.as_str(),
            "command": self.command,
            "args": self.args.iter().cloned().collect::<serde_json::Map<_, _>>(),
            "enabled": self.enabled,
            "recursive": self.recursive,
            "ignore": self.ignore,
            "debounce_ms": u64::try_from(self.debounce.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// The rules of one file.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The file read; `None` when there is none (no rules).
    pub path: Option<PathBuf>,
    pub rules: Vec<Rule>,
}

impl RuleSet {
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    pub fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }
}

/// Where `watchers.yaml` is: the config root's, else the data directory's.
pub fn locate(dirs: &Dirs) -> Option<PathBuf> {
    [dirs.root.join(FILE_NAME), dirs.home.join(FILE_NAME)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Loads the rules (none when there is no `watchers.yaml`).
pub fn load(dirs: &Dirs) -> Result<RuleSet, FileErrors> {
    let Some(path) = locate(dirs) else {
        return Ok(RuleSet::default());
    };
    let source = yaml::read_text(&path, MAX_FILE_BYTES, "watchers file")?;
    let home = crate::config::env::var("HOME").map(PathBuf::from);
    let rules = load_str(&path, source, &dirs.root, home.as_deref())?;
    Ok(RuleSet {
        path: Some(path),
        rules,
    })
}

/// Checks the text of a `watchers.yaml`. `root` anchors relative paths, `home` expands `~`.
pub fn load_str(
    path: &Path,
    source: String,
    root: &Path,
    home: Option<&Path>,
) -> Result<Vec<Rule>, FileErrors> {
    let yaml::Source { text, root: tree } = yaml::parse(path, source)?;
    let mut cx = Cx {
        r: Reader::new(),
        root,
        home,
    };
    let rules = match &tree.value {
        Value::Null => Vec::new(),
        Value::Seq(items) => {
            let mut rules: Vec<Rule> = Vec::new();
            for item in items {
                if let Some(rule) = cx.rule(item) {
                    if let Some(first) = rules.iter().find(|r| r.name == rule.name) {
                        cx.err(
                            rule.pos,
                            format!(
                                "duplicate rule name `{}` (first used at line {}): rule names must be unique",
                                rule.name, first.pos.line
                            ),
                        );
                        continue;
                    }
                    rules.push(rule);
                }
            }
            rules
        }
        _ => {
            cx.err(
                tree.pos,
                format!(
                    "watchers.yaml must be a list of rules (`- name: …`), found {}",
                    tree.kind()
                ),
            );
            Vec::new()
        }
    };
    cx.r.finish(path, text)?;
    Ok(rules)
}

struct Cx<'a> {
    r: Reader,
    root: &'a Path,
    home: Option<&'a Path>,
}

impl std::ops::Deref for Cx<'_> {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        &self.r
    }
}

impl std::ops::DerefMut for Cx<'_> {
    fn deref_mut(&mut self) -> &mut Reader {
        &mut self.r
    }
}

impl Cx<'_> {
    fn rule(&mut self, node: &Node) -> Option<Rule> {
        let Value::Map(_) = &node.value else {
            self.err(
                node.pos,
                format!(
                    "each rule must be a mapping with `name`, `path`, `action`, found {}",
                    node.kind()
                ),
            );
            return None;
        };
        let what = match node.get("name").and_then(Node::as_str) {
            Some(n) => format!("rule `{n}`"),
            None => "the rule".to_owned(),
        };
        let mut name = None;
        let mut path = None;
        let mut events = None;
        let mut action = None;
        let mut command = String::new();
        let mut command_pos = node.pos;
        let mut args = Vec::new();
        let mut enabled = true;
        let mut recursive = false;
        let mut ignore = Vec::new();
        let mut debounce = DEFAULT_DEBOUNCE;
        let mut ok = true;
        let errors_before = self.r.diags.len();
        for (k, value) in self.entries(node, RULE_KEYS, &what) {
            match k {
                "name" => {
                    name = self.string(value, "name").and_then(|n| {
                        if n.trim().is_empty() || n.contains(['/', '\n', '\0']) {
                            self.err(
                                value.pos,
                                "`name` must be a non-empty name without `/` or line breaks",
                            );
                            None
                        } else {
                            Some(n)
                        }
                    });
                }
                "path" => {
                    path = self.string(value, "path").and_then(|p| {
                        if p.trim().is_empty() {
                            self.err(value.pos, "`path` must not be empty");
                            None
                        } else {
                            Some((p, value.pos))
                        }
                    });
                }
                "events" => {
                    let mut list = Vec::new();
                    for (e, pos) in self.string_list(value, "events") {
                        match EventKind::parse(&e) {
                            Some(kind) if !list.contains(&kind) => list.push(kind),
                            Some(_) => {}
                            None => self.err_help(
                                pos,
                                format!(
                                    "unknown event `{e}` (expected created, modified, deleted or moved)"
                                ),
                                did_you_mean(&e, EventKind::ALL.iter().map(|k| k.as_str())),
                            ),
                        }
                    }
                    if list.is_empty() && value.value != Value::Null {
                        self.err(value.pos, "`events` must name at least one event");
                    }
                    events = Some(list);
                }
                "action" => {
                    if let Some(a) = self.string(value, "action") {
                        action = ActionKind::ALL.into_iter().find(|k| k.as_str() == a);
                        if action.is_none() {
                            self.err_help(
                                value.pos,
                                format!(
                                    "unknown action `{a}` (expected shell, skill, workflow, move or copy)"
                                ),
                                did_you_mean(&a, ActionKind::ALL.iter().map(|k| k.as_str())),
                            );
                            ok = false;
                        }
                    }
                }
                "command" => {
                    command_pos = value.pos;
                    command = self.string(value, "command").unwrap_or_default();
                }
                "args" if value.value == Value::Null => {}
                "args" => {
                    for (k, v) in self.entries(value, &[], "`args`") {
                        if let Value::Seq(_) | Value::Map(_) = v.value {
                            self.err(
                                v.pos,
                                format!("`args.{k}` must be a single value, found {}", v.kind()),
                            );
                        } else {
                            args.push((k.to_owned(), v.to_json()));
                        }
                    }
                }
                "enabled" => enabled = self.boolean(value, "enabled").unwrap_or(true),
                "recursive" => recursive = self.boolean(value, "recursive").unwrap_or(false),
                "ignore" => ignore = self.string_list(value, "ignore"),
                "debounce" => {
                    if let Some(d) = self.debounce(value) {
                        debounce = d;
                    }
                }
                _ => {}
            }
        }
        let Some(name) = name else {
            if node.get("name").is_none() {
                self.err(node.pos, "the rule has no `name`");
            }
            return None;
        };
        let Some((path, path_pos)) = path else {
            if node.get("path").is_none() {
                self.err(node.pos, format!("rule `{name}` has no `path`"));
            }
            return None;
        };
        let Some(action) = action else {
            if ok && node.get("action").is_none() {
                self.err(
                    node.pos,
                    format!(
                        "rule `{name}` has no `action` (expected shell, skill, workflow, move or copy)"
                    ),
                );
            }
            return None;
        };
        if command.trim().is_empty() {
            let what_command = match action {
                ActionKind::Shell => "the command to run",
                ActionKind::Skill => "the skill's name",
                ActionKind::Workflow => "the workflow's name",
                ActionKind::Move | ActionKind::Copy => "the destination directory",
            };
            self.err(
                if node.get("command").is_some() {
                    command_pos
                } else {
                    node.pos
                },
                format!(
                    "rule `{name}` has no `command` ({what_command} for a {} action)",
                    action.as_str()
                ),
            );
        }
        let (dir, pattern) = self.split_path(&path);
        let glob = match &pattern {
            Some(p) => match GlobBuilder::new(p).literal_separator(true).build() {
                Ok(g) => Some(g.compile_matcher()),
                Err(e) => {
                    self.err(path_pos, format!("invalid glob in `path`: {}", e.kind()));
                    None
                }
            },
            None => None,
        };
        let mut set = GlobSetBuilder::new();
        for (pattern, pos) in &ignore {
            match Glob::new(pattern) {
                Ok(g) => {
                    set.add(g);
                }
                Err(e) => self.err(*pos, format!("invalid glob in `ignore`: {}", e.kind())),
            }
        }
        let ignore_set = set.build().unwrap_or_else(|_| GlobSet::empty());
        if matches!(action, ActionKind::Move | ActionKind::Copy)
            && !command.trim().is_empty()
            && self.resolve(command.trim()) == dir
        {
            self.err_help(
                command_pos,
                format!(
                    "rule `{name}` would {} files into the directory it watches",
                    action.as_str()
                ),
                Some("choose a destination outside the watched directory".to_owned()),
            );
        }
        if self.r.diags.len() > errors_before {
            return None;
        }
        Some(Rule {
            name,
            path,
            dir,
            pattern,
            glob,
            events: events.unwrap_or_else(|| vec![EventKind::Created]),
            action,
            command,
            args,
            enabled,
            recursive,
            ignore: ignore.into_iter().map(|(s, _)| s).collect(),
            ignore_set,
            debounce,
            pos: node.pos,
        })
    }

    fn debounce(&mut self, node: &Node) -> Option<Duration> {
        let parsed = match &node.value {
            Value::Str(s) if s.trim().chars().all(|c| c.is_ascii_digit()) => {
                Err("a bare number is ambiguous".to_owned())
            }
            Value::Str(s) => duration::parse(s),
            Value::Int(_) | Value::Float(_) => Err("a bare number is ambiguous".to_owned()),
            _ => Err(format!("found {}", node.kind())),
        };
        match parsed {
            Ok(d) if d <= Duration::from_secs(3600) => Some(d),
            Ok(_) => {
                self.err(node.pos, "`debounce` must be at most 1h");
                None
            }
            Err(why) => {
                self.err_help(
                    node.pos,
                    format!("invalid `debounce`: {why}"),
                    Some("write a unit, e.g. `500ms`, `2s` or `0s` for none".to_owned()),
                );
                None
            }
        }
    }

    /// `~` expanded; relative paths are taken from the config root.
    fn resolve(&self, p: &str) -> PathBuf {
        let expanded = match (p.strip_prefix('~'), self.home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                home.join(rest.trim_start_matches('/'))
            }
            _ => PathBuf::from(p),
        };
        let joined = if expanded.is_absolute() {
            expanded
        } else {
            self.root.join(expanded)
        };
        normalize(&joined)
    }

    /// The watched directory and the file-name glob: as in the seed, the parent when the last
    /// component has a glob character (`*?[`), else the path itself.
    fn split_path(&self, p: &str) -> (PathBuf, Option<String>) {
        let resolved = self.resolve(p);
        match resolved
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        {
            Some(last) if last.contains(['*', '?', '[']) => {
                let dir = resolved
                    .parent()
                    .map_or_else(|| resolved.clone(), Path::to_path_buf);
                (dir, Some(last))
            }
            _ => (resolved, None),
        }
    }
}

/// Removes `.` and resolves `..` lexically (the directory may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Diagnostic;

    fn load(src: &str) -> Result<Vec<Rule>, FileErrors> {
        load_str(
            Path::new("watchers.yaml"),
            src.to_owned(),
            Path::new("/root"),
            Some(Path::new("/home/u")),
        )
    }

    #[test]
    fn seed_example_loads() {
        let rules = load(include_str!(
            "../../../tests/fixtures/seed/examples/watchers.yaml"
        ))
        .unwrap();
        assert_eq!(rules.len(), 2);
        let t = &rules[0];
        assert_eq!(t.name, "torrent-mover");
        assert_eq!(t.dir, Path::new("/home/u/Downloads"));
        assert_eq!(t.pattern.as_deref(), Some("*.torrent"));
        assert_eq!(t.action, ActionKind::Move);
        assert_eq!(t.events, vec![EventKind::Created]);
        assert!(t.matches(Path::new("/home/u/Downloads/a.torrent")));
        assert!(!t.matches(Path::new("/home/u/Downloads/a.txt")));
        assert!(!t.matches(Path::new("/home/u/Downloads/sub/a.torrent")));
        assert_eq!(t.debounce, DEFAULT_DEBOUNCE);
        assert_eq!(rules[1].action, ActionKind::Shell);
    }

    #[test]
    fn ignore_and_recursive() {
        let rules = load(
            "- name: r\n  path: data\n  action: shell\n  command: 'true'\n  recursive: true\n  ignore: ['*.tmp', 'cache/**']\n  debounce: 50ms\n",
        )
        .unwrap();
        let r = &rules[0];
        assert_eq!(r.dir, Path::new("/root/data"));
        assert!(r.matches(Path::new("/root/data/a/b.txt")));
        assert!(!r.matches(Path::new("/root/data/a/b.tmp")));
        assert!(!r.matches(Path::new("/root/data/cache/x")));
        assert!(!r.matches(Path::new("/root/other/x")));
        assert_eq!(r.debounce, Duration::from_millis(50));
    }

    #[test]
    fn every_problem_is_reported() {
        let err = load(
            "- name: a\n  path: /x\n  action: shel\n  command: c\n- name: b\n  paht: /y\n  action: move\n- name: c\n  path: /z\n  events: [created, changed]\n  action: copy\n  command: /z\n  debounce: 500\n",
        )
        .unwrap_err();
        let msgs: Vec<String> = err.diagnostics.iter().map(Diagnostic::headline).collect();
        assert_eq!(
            msgs,
            vec![
                "watchers.yaml:3:11: unknown action `shel` (expected shell, skill, workflow, move or copy)",
                "watchers.yaml:5:3: rule `b` has no `path`",
                "watchers.yaml:6:3: unknown key `paht` in rule `b`",
                "watchers.yaml:10:21: unknown event `changed` (expected created, modified, deleted or moved)",
                "watchers.yaml:12:12: rule `c` would copy files into the directory it watches",
                "watchers.yaml:13:13: invalid `debounce`: a bare number is ambiguous",
            ]
        );
        assert_eq!(
            err.diagnostics[0].help.as_deref(),
            Some("did you mean `shell`?")
        );
    }

    #[test]
    fn not_a_list() {
        let err = load("name: x\n").unwrap_err();
        assert!(
            err.diagnostics[0].message.contains("must be a list"),
            "{err:?}"
        );
        assert!(load("").unwrap().is_empty());
    }
}
