//! `claw skill create`: a new skill from a template (bash or python), ready to run and valid.

use std::path::{Path, PathBuf};

use super::manifest;

/// The script language of a new skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bash,
    Python,
}

const MANIFEST: &str = include_str!("templates/skill.yaml.tmpl");
const BASH: &str = include_str!("templates/run.sh.tmpl");
const PYTHON: &str = include_str!("templates/run.py.tmpl");

/// Why a skill was not created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a valid skill name: start with a letter or digit; use only letters, digits, `-`, `_` and `.`"
    )]
    BadName(String),
    #[error("{} already exists; not overwriting it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl crate::error::ExitStatus for ScaffoldError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::Io { .. } => crate::error::INTERNAL,
            _ => crate::error::INVALID,
        }
    }
}

/// Writes `skills_dir/<name>/` with `skill.yaml` and `run.sh` or `run.py`; returns the directory.
pub fn create(
    skills_dir: &Path,
    name: &str,
    kind: Kind,
    description: &str,
    author: &str,
) -> Result<PathBuf, ScaffoldError> {
    create_with(skills_dir, name, kind, description, author, &[], &[])
}

/// [`create`] with the manifest's `permissions` and `triggers` filled in (the seed's
/// `--permission` and `--trigger`).
pub fn create_with(
    skills_dir: &Path,
    name: &str,
    kind: Kind,
    description: &str,
    author: &str,
    permissions: &[String],
    triggers: &[String],
) -> Result<PathBuf, ScaffoldError> {
    use std::os::unix::fs::PermissionsExt as _;
    if !manifest::valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let dir = skills_dir.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let (script, body, deps) = match kind {
        Kind::Bash => ("run.sh", BASH, "bash"),
        Kind::Python => ("run.py", PYTHON, "python3"),
    };
    // A description is one line inside double quotes in the manifest.
    let description = description.replace(['\n', '\r'], " ").replace('"', "'");
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| yaml_scalar(i.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (permissions, triggers) = (list(permissions), list(triggers));
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{permissions}}", &permissions)
            .replace("{{triggers}}", &triggers)
            .replace("{{description}}", &description)
            .replace("{{author}}", &yaml_scalar(author))
            .replace("{{script}}", script)
            .replace("{{dependencies}}", deps)
    };
    std::fs::create_dir_all(&dir).map_err(|e| ScaffoldError::Io {
        path: dir.clone(),
        source: e,
    })?;
    let manifest_path = dir.join(manifest::MANIFEST_FILE);
    std::fs::write(&manifest_path, fill(MANIFEST)).map_err(|e| ScaffoldError::Io {
        path: manifest_path,
        source: e,
    })?;
    let script_path = dir.join(script);
    std::fs::write(&script_path, fill(body)).map_err(|e| ScaffoldError::Io {
        path: script_path.clone(),
        source: e,
    })?;
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).map_err(
        |e| ScaffoldError::Io {
            path: script_path,
            source: e,
        },
    )?;
    Ok(dir)
}

/// A value safe as a plain YAML scalar (quoted when it needs to be).
fn yaml_scalar(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_make_valid_skills_and_nothing_is_overwritten() {
        let t = tempfile::tempdir().expect("tmp");
        for (name, kind) in [("greet-sh", Kind::Bash), ("greet-py", Kind::Python)] {
            let dir = create(t.path(), name, kind, "Says \"hello\"", "A. Person").expect("created");
            let skill =
                super::super::Skill::load(&dir).unwrap_or_else(|e| panic!("{}", e.render()));
            assert_eq!(skill.name(), name);
            assert!(skill.script_problem().is_none());
            assert_eq!(skill.manifest.args.len(), 1);
            assert!(matches!(
                create(t.path(), name, kind, "", "a"),
                Err(ScaffoldError::Exists(_))
            ));
        }
        assert!(matches!(
            create(t.path(), "../x", Kind::Bash, "", "a"),
            Err(ScaffoldError::BadName(_))
        ));
        let dir = create_with(
            t.path(),
            "granted",
            Kind::Bash,
            "",
            "a",
            &["vault:API_KEY".to_owned(), "network".to_owned()],
            &["disk full".to_owned()],
        )
        .expect("created");
        let skill = super::super::Skill::load(&dir).unwrap_or_else(|e| panic!("{}", e.render()));
        assert_eq!(skill.manifest.permissions, ["vault:API_KEY", "network"]);
        assert_eq!(skill.manifest.triggers, [serde_json::json!("disk full")]);
    }
}
