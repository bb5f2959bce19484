//! `triggers.yaml`: the seed's chat triggers, a list of `{pattern, action, command, reply}`.
//! A pattern is a regex, matched case-insensitively anywhere in the text (Python's `re.search`);
//! the first trigger that matches wins. Read with every problem reported at its position (an
//! invalid regex included); a file with any problem loads nothing.
//!
//! ```yaml
//! - pattern: '^!disk\b'
//!   action: shell            # shell (default) | skill | workflow
//!   command: df -h /
//!   reply: true              # send the output back (default true)
//! ```

use std::path::{Path, PathBuf};

use regex::Regex;

use crate::config::paths::Dirs;
use crate::diagnostic::{FileErrors, Pos, did_you_mean};
use crate::yaml::{self, Reader, Value};

pub const FILE_NAME: &str = "triggers.yaml";
const MAX_BYTES: u64 = 1024 * 1024;
/// A pattern longer than this is refused (a pattern is an admin's, but a regex is compiled for
/// every message).
const MAX_PATTERN: usize = 1000;
const KEYS: &[&str] = &["pattern", "action", "command", "reply"];
pub const ACTIONS: &[&str] = &["shell", "skill", "workflow"];

/// What a trigger does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `command` run by `/bin/sh -c`, with the text in `TRIGGER_MESSAGE` and the captures in
    /// `TRIGGER_MATCH_<n>` (never in the command line itself).
    Shell,
    /// The skill named by `command`, the named captures as its args.
    Skill,
    /// The workflow named by `command`, the named captures as its params.
    Workflow,
}

/// One trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub pattern: Regex,
    pub action: Action,
    pub command: String,
    pub reply: bool,
    pub pos: Pos,
}

/// A match: the whole text matched and each group (`None` where a group took no part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index 0 is the whole match, then the groups in order.
    pub groups: Vec<Option<String>>,
    /// The named groups that matched.
    pub named: Vec<(String, String)>,
}

impl Trigger {
    pub fn find(&self, text: &str) -> Option<Match> {
        let caps = self.pattern.captures(text)?;
        let groups = caps
            .iter()
            .map(|g| g.map(|m| m.as_str().to_owned()))
            .collect();
        let named = self
            .pattern
            .capture_names()
            .flatten()
            .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
            .collect();
        Some(Match { groups, named })
    }
}

/// The triggers and the file they came from.
#[derive(Debug, Default)]
pub struct Triggers {
    pub path: Option<PathBuf>,
    pub triggers: Vec<Trigger>,
}

impl Triggers {
    /// The first trigger whose pattern matches `text`, and the match.
    pub fn first(&self, text: &str) -> Option<(&Trigger, Match)> {
        self.triggers
            .iter()
            .find_map(|t| t.find(text).map(|m| (t, m)))
    }
}

/// Where `triggers.yaml` is: the config root's, else the data directory's.
pub fn path(dirs: &Dirs) -> Option<PathBuf> {
    [dirs.root.join(FILE_NAME), dirs.home.join(FILE_NAME)]
        .into_iter()
        .find(|p| p.exists())
}

pub fn load(dirs: &Dirs) -> Result<Triggers, FileErrors> {
    match path(dirs) {
        None => Ok(Triggers::default()),
        Some(p) => load_file(&p),
    }
}

pub fn load_file(path: &Path) -> Result<Triggers, FileErrors> {
    let src = yaml::read_file(path, MAX_BYTES, "triggers file")?;
    let mut r = Reader::new();
    let mut triggers = Vec::new();
    match &src.root.value {
        Value::Null => {}
        Value::Seq(items) => {
            for item in items {
                if let Some(t) = trigger(&mut r, item) {
                    triggers.push(t);
                }
            }
        }
        _ => r.err(
            src.root.pos,
            format!(
                "triggers.yaml must be a list of triggers (`- pattern: …`), found {}",
                src.root.kind()
            ),
        ),
    }
    r.finish(path, src.text)?;
    Ok(Triggers {
        path: Some(path.to_path_buf()),
        triggers,
    })
}

fn trigger(r: &mut Reader, item: &yaml::Node) -> Option<Trigger> {
    let mut pattern = None;
    let mut action = Some(Action::Shell);
    let mut command = None;
    let mut reply = Some(true);
    for (k, v) in r.entries(item, KEYS, "a trigger") {
        match k {
            "pattern" => {
                let Some(p) = r.string(v, "pattern") else {
                    continue;
                };
                if p.is_empty() {
                    r.err(v.pos, "`pattern` is empty (it would match every message)");
                } else if p.len() > MAX_PATTERN {
                    r.err(
                        v.pos,
                        format!("`pattern` is longer than {MAX_PATTERN} characters"),
                    );
                } else {
                    match regex::RegexBuilder::new(&p)
                        .case_insensitive(true)
                        .size_limit(1 << 20)
                        .build()
                    {
                        Ok(re) => pattern = Some(re),
                        Err(e) => r.err(v.pos, format!("`pattern` is not a valid regex: {e}")),
                    }
                }
            }
            "action" => {
                action = None;
                let Some(a) = r.string(v, "action") else {
                    continue;
                };
                action = match a.as_str() {
                    "shell" => Some(Action::Shell),
                    "skill" => Some(Action::Skill),
                    "workflow" => Some(Action::Workflow),
                    "claude" => {
                        r.err_help(
                            v.pos,
                            "action `claude` (a prompt to the chat model) is not supported by claw's triggers yet",
                            Some("use `action: workflow` with a workflow whose step is `type: llm`".to_owned()),
                        );
                        None
                    }
                    other => {
                        r.err_help(
                            v.pos,
                            format!("unknown action `{other}` (shell, skill, workflow)"),
                            did_you_mean(other, ACTIONS.iter().copied()),
                        );
                        None
                    }
                };
            }
            "command" => {
                command = r.string(v, "command");
                if command.as_deref().is_some_and(|c| c.trim().is_empty()) {
                    r.err(v.pos, "`command` is empty");
                    command = None;
                }
            }
            _ => reply = r.boolean(v, "reply"),
        }
    }
    if matches!(item.value, Value::Map(_)) {
        if item.get("pattern").is_none() {
            r.err(item.pos, "a trigger needs `pattern`");
        }
        if item.get("command").is_none() {
            r.err(item.pos, "a trigger needs `command`");
        }
    }
    Some(Trigger {
        pattern: pattern?,
        action: action?,
        command: command?,
        reply: reply?,
        pos: item.pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Triggers, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = dir.path().join(FILE_NAME);
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        load_file(&p).map_err(|e| e.render())
    }

    #[test]
    fn the_first_matching_trigger_wins_case_insensitively_with_its_captures() {
        let t = load_text(
            "- pattern: '^!disk (?P<mount>\\S+)'\n  command: df -h \"$TRIGGER_MATCH_1\"\n- pattern: disk\n  action: skill\n  command: disk-report\n  reply: false\n",
        )
        .expect("loads");
        let (first, m) = t.first("!DISK /var now").expect("matches");
        assert_eq!(first.action, Action::Shell);
        assert!(first.reply);
        assert_eq!(
            m.groups,
            vec![Some("!DISK /var".to_owned()), Some("/var".to_owned())]
        );
        assert_eq!(m.named, vec![("mount".to_owned(), "/var".to_owned())]);
        let (second, _) = t.first("how full is the Disk?").expect("matches");
        assert_eq!((second.action, second.reply), (Action::Skill, false));
        assert!(t.first("hello").is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_position_and_nothing_loads() {
        let e = load_text(
            "- pattern: '(unclosed'\n  command: x\n- pattern: ok\n  action: claude\n  command: x\n- pattern: ok\n  action: shel\n- command: y\n  replay: true\n",
        )
        .expect_err("refused");
        for needle in [
            "triggers.yaml:1:",
            "not a valid regex",
            "triggers.yaml:4:",
            "action `claude`",
            "triggers.yaml:7:",
            "unknown action `shel`",
            "a trigger needs `command`",
            "a trigger needs `pattern`",
            "unknown key `replay`",
        ] {
            assert!(e.contains(needle), "{needle} in {e}");
        }
        let e = load_text("pattern: x\n").expect_err("not a list");
        assert!(e.contains("must be a list"), "{e}");
    }
}
