//! Skills (DESIGN.md §8): a directory `skills/<name>/` holding a `skill.yaml` manifest and the
//! script it names. Found in the config root's `skills/` and the data directory's (depth 1,
//! directories starting with `_` or `.` skipped); run by [`runner`] with a stripped environment,
//! in a process group killed on timeout, optionally confined by Landlock ([`sandbox`]).
//!
//! - [`manifest`]: loading and checking `skill.yaml`, every problem with its line and column.
//! - [`runner`]: from a skill and its arguments to a [`runner::Launch`] (program, environment,
//!   confinement), checking dependencies and vault grants before anything runs.
//! - [`sandbox`]: Landlock: detection, and the `claw __sandbox` launcher that confines itself
//!   and then executes the script.
//! - [`hub`]: SkillHub, a git repository of skills (`push`, `pull`, `list`, `diff`).
//! - [`scaffold`]: `claw skill create` templates.

pub mod hub;
pub mod manifest;
pub mod runner;
pub mod sandbox;
pub mod scaffold;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Dirs;
use crate::diagnostic::FileErrors;
use crate::diagnostic::{Diagnostic, did_you_mean};
pub use manifest::Manifest;

/// A skill's timeout when its manifest gives none (the seed's 300 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A skill found on disk, with a valid manifest.
#[derive(Debug, Clone)]
pub struct Skill {
    pub manifest: Manifest,
    /// The skill's directory (the script's working directory).
    pub dir: PathBuf,
    /// Its `skill.yaml`.
    pub manifest_path: PathBuf,
}

impl Skill {
    /// Loads `dir/skill.yaml`.
    pub fn load(dir: &Path) -> Result<Self, FileErrors> {
        let manifest_path = dir.join(manifest::MANIFEST_FILE);
        let manifest = manifest::load_file(&manifest_path)?;
        Ok(Self {
            manifest,
            dir: dir.to_path_buf(),
            manifest_path,
        })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn script_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.script)
    }

    pub fn timeout(&self) -> Duration {
        self.manifest.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// "script not found", at the `script:` line, when the script is missing.
    pub fn script_problem(&self) -> Option<Diagnostic> {
        let script = self.script_path();
        if script.is_file() {
            return None;
        }
        Some(
            Diagnostic::error(
                self.manifest.script_pos,
                format!("script not found: {}", self.manifest.script),
            )
            .with_help(format!(
                "create {} or point `script:` at the file to run",
                script.display()
            ))
            .in_file(&self.manifest_path),
        )
    }

    /// How the script is started: `bash`, `python3`, or executed directly.
    pub fn interpreter(&self) -> Option<&'static str> {
        match Path::new(&self.manifest.script)
            .extension()
            .and_then(|e| e.to_str())
        {
            Some("sh") => Some("bash"),
            Some("py") => Some("python3"),
            _ => None,
        }
    }
}

/// Everything under the skill directories.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Valid skills, sorted by name; where two share a name, the config root's wins.
    pub skills: Vec<Skill>,
    /// Manifests that did not load.
    pub broken: Vec<FileErrors>,
    /// Skills hidden by another of the same name: (hidden, the one used).
    pub shadowed: Vec<(PathBuf, PathBuf)>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills.iter().find(|s| s.name() == name)
    }
}

/// The folders searched for skills: the config root's `skills/`, then the data directory's.
pub fn skill_dirs(dirs: &Dirs) -> Vec<PathBuf> {
    let mut out = vec![dirs.root.join("skills")];
    let home = dirs.home.join("skills");
    if !out.contains(&home) {
        out.push(home);
    }
    out
}

/// Finds every `skills/<dir>/skill.yaml` (depth 1, `_*` and `.*` skipped).
pub fn discover(dirs: &Dirs) -> Catalog {
    discover_in(&skill_dirs(dirs))
}

/// [`discover`] over explicit folders (earlier folders win on a name clash).
pub fn discover_in(folders: &[PathBuf]) -> Catalog {
    let mut cat = Catalog::default();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('_') && !name.starts_with('.')
            })
            .map(|e| e.path())
            .filter(|p| p.is_dir() && p.join(manifest::MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            match Skill::load(&dir) {
                Ok(skill) => {
                    if let Some(first) = cat.get(skill.name()) {
                        cat.shadowed
                            .push((skill.manifest_path.clone(), first.manifest_path.clone()));
                    } else {
                        cat.skills.push(skill);
                    }
                }
                Err(e) => cat.broken.push(e),
            }
        }
    }
    cat.skills.sort_by(|a, b| a.name().cmp(b.name()));
    cat
}

/// Why a skill cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    #[error("skill not found: {name}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    NotFound { name: String, hint: Option<String> },
    #[error("skill `{name}` has an invalid manifest:\n{}", errors.render())]
    Invalid { name: String, errors: FileErrors },
    #[error("skill `{skill}`: script not found: {}", script.display())]
    ScriptNotFound { skill: String, script: PathBuf },
    #[error("skill `{skill}`: missing dependencies: {} (not on PATH)", missing.join(", "))]
    MissingDependencies { skill: String, missing: Vec<String> },
    #[error("skill `{skill}`: {}", problems.join("; "))]
    BadArgs {
        skill: String,
        problems: Vec<String>,
    },
    #[error("skill `{skill}`: {why}")]
    Vault { skill: String, why: String },
    #[error("skill `{skill}`: {why}")]
    Sandbox { skill: String, why: String },
}

impl crate::error::ExitStatus for SkillError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::NotFound { .. }
            | Self::Invalid { .. }
            | Self::ScriptNotFound { .. }
            | Self::BadArgs { .. } => 2,
            Self::MissingDependencies { .. } | Self::Vault { .. } | Self::Sandbox { .. } => 3,
        }
    }
}

/// Finds a skill by name. A directory of that name with a broken manifest is reported as such,
/// not as "not found".
pub fn find(dirs: &Dirs, name: &str) -> Result<Skill, SkillError> {
    let cat = discover(dirs);
    if let Some(s) = cat.get(name) {
        return Ok(s.clone());
    }
    if let Some(errors) = cat.broken.into_iter().find(|e| {
        e.path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == name)
    }) {
        return Err(SkillError::Invalid {
            name: name.to_owned(),
            errors,
        });
    }
    let hint = did_you_mean(name, cat.skills.iter().map(Skill::name));
    let hint = hint.or_else(|| {
        cat.skills.is_empty().then(|| {
            let looked: Vec<String> = skill_dirs(dirs)
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            format!("no skills in {}", looked.join(" or "))
        })
    });
    Err(SkillError::NotFound {
        name: name.to_owned(),
        hint,
    })
}

/// The audit entry of one skill run: who, which skill, how it ended.
pub fn audit_event(
    actor: &str,
    skill: &str,
    outcome: &str,
    detail: serde_json::Value,
) -> crate::audit::Event {
    crate::audit::Event::new(
        actor,
        crate::audit::Action::SkillRun,
        skill,
        outcome,
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    fn manifest(name: &str) -> String {
        format!("name: {name}\nversion: '1'\ndescription: d\nauthor: a\nscript: run.sh\n")
    }

    #[test]
    fn discovery_is_depth_one_skips_underscores_and_prefers_the_root() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("root/skills");
        let home = t.path().join("home/skills");
        write(&root.join("a/skill.yaml"), &manifest("a"));
        write(&root.join("_template/skill.yaml"), &manifest("template"));
        write(&root.join("deep/inner/skill.yaml"), &manifest("deep"));
        write(&root.join("broken/skill.yaml"), "name: [\n");
        write(&home.join("a/skill.yaml"), &manifest("a"));
        write(&home.join("b/skill.yaml"), &manifest("b"));
        let cat = discover_in(&[root.clone(), home.clone()]);
        let names: Vec<&str> = cat.skills.iter().map(Skill::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(cat.get("a").expect("a").dir, root.join("a"));
        assert_eq!(cat.broken.len(), 1);
        assert_eq!(cat.shadowed.len(), 1);
    }

    #[test]
    fn a_missing_script_is_reported_at_its_line() {
        let t = tempfile::tempdir().expect("tmp");
        write(&t.path().join("s/skill.yaml"), &manifest("s"));
        let skill = Skill::load(&t.path().join("s")).expect("valid");
        let d = skill.script_problem().expect("missing");
        assert_eq!(d.message, "script not found: run.sh");
        assert_eq!((d.pos.line, d.pos.col), (5, 9));
        write(&t.path().join("s/run.sh"), "echo hi\n");
        assert!(skill.script_problem().is_none());
        assert_eq!(skill.interpreter(), Some("bash"));
    }
}
