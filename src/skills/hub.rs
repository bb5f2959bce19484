//! SkillHub: skills shared through a git repository (a URL or a path, the `CLAW_SKILL_HUB`
//! setting), one directory per skill at its top level. claw keeps a clone in the data directory
//! (`skillhub/`) and drives it with the `git` command-line tool, so every transport, credential
//! helper and SSH setting of the user's git applies.
//!
//! - `push NAME`: copies the local skill into the clone, commits "Update skill: NAME" (the seed's
//!   message) and pushes.
//! - `pull [NAME]`: fetches, then copies the hub's skill (all of them without NAME) into the
//!   config root's `skills/`, each checked before it replaces anything.
//! - `list`: the hub's skills and how each compares with the local copy.
//! - `diff NAME`: `git diff --no-index` between the hub's copy and the local one.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Skill, manifest};

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "no SkillHub is configured: set CLAW_SKILL_HUB (or pass --hub) to a git repository URL or path"
    )]
    NotConfigured,
    #[error("cannot run git: {0} (is git installed?)")]
    NoGit(std::io::Error),
    #[error("`git {args}` failed: {stderr}")]
    Git { args: String, stderr: String },
    #[error("{0}")]
    Io(String),
    #[error("skill `{0}` is not in the SkillHub")]
    NotInHub(String),
    #[error("the SkillHub's copy of `{name}` is invalid:\n{rendered}")]
    Invalid { name: String, rendered: String },
}

impl crate::error::ExitStatus for HubError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::NotConfigured | Self::NotInHub(_) | Self::Invalid { .. } => crate::error::INVALID,
            _ => crate::error::INTERNAL,
        }
    }
}

/// A SkillHub and the local clone claw keeps of it.
#[derive(Debug, Clone)]
pub struct Hub {
    pub url: String,
    /// The clone (`<data dir>/skillhub`).
    pub clone: PathBuf,
}

/// How a hub skill compares with the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalState {
    Same,
    Differs,
    NotInstalled,
}

impl LocalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::Differs => "differs",
            Self::NotInstalled => "not installed",
        }
    }
}

/// One skill in the hub.
#[derive(Debug, Clone)]
pub struct HubSkill {
    pub name: String,
    pub version: String,
    pub description: String,
    pub local: LocalState,
}

/// What `pull` did to one skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    Installed(String),
    Updated(String),
    Unchanged(String),
}

fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, HubError> {
    #[allow(
        clippy::disallowed_methods,
        reason = "SkillHub talks to git through its CLI"
    )]
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    // Never wait for a password prompt on a terminal that is not there.
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
    let out = cmd.output().map_err(HubError::NoGit)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HubError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> HubError {
    HubError::Io(format!("cannot {what} {}: {e}", path.display()))
}

impl Hub {
    /// `url` from the setting; `home` is the data directory.
    pub fn new(url: Option<String>, home: &Path) -> Result<Self, HubError> {
        let url = url
            .filter(|u| !u.trim().is_empty())
            .ok_or(HubError::NotConfigured)?;
        Ok(Self {
            url,
            clone: home.join("skillhub"),
        })
    }

    /// Makes the clone match the hub (cloning it the first time, or again if the hub changed).
    /// Returns the branch.
    pub fn sync(&self) -> Result<String, HubError> {
        let is_clone = self.clone.join(".git").is_dir();
        let same_remote = is_clone
            && git(Some(&self.clone), &["remote", "get-url", "origin"])
                .is_ok_and(|u| u.trim() == self.url);
        if !same_remote {
            if self.clone.exists() {
                std::fs::remove_dir_all(&self.clone)
                    .map_err(|e| io("remove the old clone", &self.clone, &e))?;
            }
            if let Some(parent) = self.clone.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create", parent, &e))?;
            }
            let dest = self.clone.display().to_string();
            git(None, &["clone", "--quiet", &self.url, &dest])?;
        } else {
            git(Some(&self.clone), &["fetch", "--quiet", "origin"])?;
        }
        let branch = git(Some(&self.clone), &["symbolic-ref", "--short", "HEAD"])?
            .trim()
            .to_owned();
        let remote_ref = format!("origin/{branch}");
        if git(
            Some(&self.clone),
            &["rev-parse", "--verify", "--quiet", &remote_ref],
        )
        .is_ok()
        {
            // The clone is claw's own: it follows the hub exactly.
            git(
                Some(&self.clone),
                &["reset", "--quiet", "--hard", &remote_ref],
            )?;
            git(Some(&self.clone), &["clean", "--quiet", "-fdx"])?;
        }
        Ok(branch)
    }

    /// The hub's skills (after [`Hub::sync`]), compared with `local`.
    pub fn list(&self, local: &super::Catalog) -> Result<Vec<HubSkill>, HubError> {
        self.sync()?;
        let mut out = Vec::new();
        let cat = super::discover_in(std::slice::from_ref(&self.clone));
        for s in cat.skills {
            let local_state = match local.get(s.name()) {
                None => LocalState::NotInstalled,
                Some(l) if same_tree(&l.dir, &s.dir) => LocalState::Same,
                Some(_) => LocalState::Differs,
            };
            out.push(HubSkill {
                name: s.manifest.name.clone(),
                version: s.manifest.version.clone(),
                description: s.manifest.description.clone(),
                local: local_state,
            });
        }
        Ok(out)
    }

    /// Records a change made by `actor` in the audit log (next to the clone, in the data
    /// directory); a failure to do so is logged.
    fn audit(&self, actor: &str, action: crate::audit::Action, skill: &str) {
        let home = self.clone.parent().unwrap_or(Path::new("."));
        let event = crate::audit::Event::new(
            actor,
            action,
            skill,
            "ok",
            serde_json::json!({"hub": self.url}),
        );
        if let Err(e) = crate::audit::AuditLog::in_dir(home).record(&event) {
            tracing::warn!(skill, "not audited: {e}");
        }
    }

    /// Publishes `skill`; returns false when the hub already had exactly this. A push is
    /// audited as `skill.hub.push` by `actor`.
    pub fn push(&self, skill: &Skill, actor: &str) -> Result<bool, HubError> {
        let branch = self.sync()?;
        let name = skill.name();
        let dest = self.clone.join(name);
        replace_tree(&skill.dir, &dest)?;
        git(Some(&self.clone), &["add", "--all", "--", name])?;
        let staged = git(Some(&self.clone), &["status", "--porcelain", "--", name])?;
        if staged.trim().is_empty() {
            return Ok(false);
        }
        let message = format!("Update skill: {name}");
        let mut args: Vec<String> = Vec::new();
        if git(Some(&self.clone), &["config", "user.email"]).is_err() {
            // No identity configured: commit as claw rather than fail.
            args.extend([
                "-c".into(),
                format!("user.name=claw ({})", crate::config::env::local_user()),
                "-c".into(),
                "user.email=claw@localhost".into(),
            ]);
        }
        args.extend(["commit".into(), "--quiet".into(), "-m".into(), message]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        git(Some(&self.clone), &refs)?;
        git(
            Some(&self.clone),
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        )?;
        self.audit(actor, crate::audit::Action::SkillHubPush, name);
        Ok(true)
    }

    /// Installs the hub's `name` (or every hub skill) into `skills_dir`; each skill installed or
    /// updated is audited as `skill.hub.pull` by `actor`.
    pub fn pull(
        &self,
        name: Option<&str>,
        skills_dir: &Path,
        actor: &str,
    ) -> Result<Vec<Pulled>, HubError> {
        self.sync()?;
        let cat = super::discover_in(std::slice::from_ref(&self.clone));
        if let Some(bad) = cat.broken.iter().find(|e| {
            name.is_none_or(|n| {
                e.path
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d == n)
            })
        }) {
            let n = bad
                .path
                .parent()
                .and_then(Path::file_name)
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(HubError::Invalid {
                name: n,
                rendered: bad.render(),
            });
        }
        let chosen: Vec<&Skill> = match name {
            Some(n) => vec![cat.get(n).ok_or_else(|| HubError::NotInHub(n.to_owned()))?],
            None => cat.skills.iter().collect(),
        };
        let mut out = Vec::new();
        for s in chosen {
            let dest = skills_dir.join(s.name());
            let result = if !dest.exists() {
                Pulled::Installed(s.name().to_owned())
            } else if same_tree(&s.dir, &dest) {
                out.push(Pulled::Unchanged(s.name().to_owned()));
                continue;
            } else {
                Pulled::Updated(s.name().to_owned())
            };
            replace_tree(&s.dir, &dest)?;
            if let Pulled::Installed(n) | Pulled::Updated(n) = &result {
                self.audit(actor, crate::audit::Action::SkillHubPull, n);
            }
            out.push(result);
        }
        Ok(out)
    }

    /// The differences between the hub's copy of `name` and `local` (empty: none).
    pub fn diff(&self, name: &str, local: &Path) -> Result<String, HubError> {
        self.sync()?;
        let theirs = self.clone.join(name);
        if !theirs.join(manifest::MANIFEST_FILE).is_file() {
            return Err(HubError::NotInHub(name.to_owned()));
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "SkillHub talks to git through its CLI"
        )]
        let out = Command::new("git")
            .args(["diff", "--no-index", "--no-color", "--"])
            .arg(&theirs)
            .arg(local)
            .output()
            .map_err(HubError::NoGit)?;
        // 0: no differences, 1: differences, anything else: trouble.
        match out.status.code() {
            Some(0 | 1) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            _ => Err(HubError::Git {
                args: "diff --no-index".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
        }
    }
}

/// Whether two skill directories hold the same files with the same bytes (`.git` ignored).
pub fn same_tree(a: &Path, b: &Path) -> bool {
    fn files(root: &Path) -> Option<Vec<(PathBuf, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).ok()?.flatten() {
                let p = e.path();
                if e.file_name() == ".git" {
                    continue;
                }
                let ft = e.file_type().ok()?;
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let rel = p.strip_prefix(root).ok()?.to_path_buf();
                    out.push((rel, std::fs::read(&p).ok()?));
                }
            }
        }
        out.sort();
        Some(out)
    }
    matches!((files(a), files(b)), (Some(x), Some(y)) if x == y)
}

/// Replaces `dest` with a copy of `src` (regular files and directories; modes kept; `.git`
/// skipped). The copy is made beside `dest` and renamed into place.
pub fn replace_tree(src: &Path, dest: &Path) -> Result<(), HubError> {
    let parent = dest
        .parent()
        .ok_or_else(|| HubError::Io(format!("{} has no parent", dest.display())))?;
    std::fs::create_dir_all(parent).map_err(|e| io("create", parent, &e))?;
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{file_name}.claw-tmp"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io("remove", &staging, &e))?;
    }
    copy_tree(src, &staging)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| io("remove", dest, &e))?;
    }
    std::fs::rename(&staging, dest).map_err(|e| io("move into place", dest, &e))
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), HubError> {
    std::fs::create_dir_all(dest).map_err(|e| io("create", dest, &e))?;
    let entries = std::fs::read_dir(src).map_err(|e| io("read", src, &e))?;
    for e in entries.flatten() {
        if e.file_name() == ".git" {
            continue;
        }
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e.file_type().map_err(|err| io("read", &from, &err))?;
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            // std::fs::copy keeps the permission bits (a script stays executable).
            std::fs::copy(&from, &to).map_err(|err| io("copy", &from, &err))?;
        }
    }
    Ok(())
}
