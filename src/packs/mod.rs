//! Packs: the seed's `pack.yaml` (`name, version, description, author, skills[], workflows[],
//! agents[]` with `skills/<name>/` and `workflows/<name>.yaml` beside it), installed from a
//! directory or a git URL into the config root's `skills/` and `workflows/`.
//!
//! An install is all or nothing: every file is validated, then copied into a staging directory
//! in the config root, then a journal is written (`<home>/packs/<name>.journal`), then each
//! target is moved aside and the staged one renamed into place, then the manifest of installed
//! files (`<home>/packs/<name>.json`, with each file's sha256) replaces the old one and the
//! journal goes. A process killed in the middle leaves the journal: the next `claw pack` command
//! puts the previous state back first. Uninstall removes exactly the files of the manifest, and
//! refuses (without `--force`) when one of them was edited since.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::audit::{Action, AuditLog, Event};
use crate::config::Dirs;
use crate::yaml::{Reader, Value};

pub const PACK_FILE: &str = "pack.yaml";
const KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "author",
    "skills",
    "workflows",
    "agents",
];

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

impl crate::error::ExitStatus for PackError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::Invalid(_) => 2,
            Self::Refused(_) => 1,
            Self::Io(_) => 3,
        }
    }
}

fn io(what: &str, p: &Path, e: &std::io::Error) -> PackError {
    PackError::Io(format!("cannot {what} {}: {e}", p.display()))
}

/// A pack's `pack.yaml`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pack {
    pub name: String,
    pub version: String,
    pub description: String,
    pub author: String,
    pub skills: Vec<String>,
    pub workflows: Vec<String>,
    pub agents: Vec<String>,
}

/// What is recorded of an installed pack.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    pub pack: Pack,
    pub source: String,
    pub installed_at: String,
    /// Every file installed, relative to the config root, with its sha256.
    pub files: BTreeMap<String, String>,
}

/// Reads and checks a pack directory: `pack.yaml` (with positions), every skill's manifest and
/// every workflow, before anything is copied. Returns the pack and its warnings.
pub fn validate(dir: &Path) -> Result<(Pack, Vec<String>), PackError> {
    let path = dir.join(PACK_FILE);
    let src = crate::yaml::read_file(&path, 1 << 20, "pack file")
        .map_err(|e| PackError::Invalid(e.render()))?;
    let mut r = Reader::new();
    let mut pack = Pack {
        name: String::new(),
        version: String::new(),
        description: String::new(),
        author: String::new(),
        skills: Vec::new(),
        workflows: Vec::new(),
        agents: Vec::new(),
    };
    let mut checks = Vec::new();
    for (k, v) in r.entries(&src.root, KEYS, PACK_FILE) {
        match k {
            "name" => pack.name = r.string(v, k).unwrap_or_default(),
            "version" => {
                pack.version = r.string(v, k).unwrap_or_default();
                if parse_version(&pack.version).is_none() {
                    r.err(
                        v.pos,
                        format!("`version` must be like 1.2.3, found `{}`", pack.version),
                    );
                }
            }
            "description" => pack.description = r.string(v, k).unwrap_or_default(),
            "author" => pack.author = r.string(v, k).unwrap_or_default(),
            "skills" | "workflows" | "agents" => {
                let names = r.string_list(v, k);
                for (n, pos) in &names {
                    if !crate::skills::manifest::valid_name(n) {
                        r.err(*pos, format!("`{n}` is not a valid name in `{k}`"));
                    }
                    checks.push((k, n.clone(), *pos));
                }
                let names = names.into_iter().map(|(n, _)| n).collect();
                match k {
                    "skills" => pack.skills = names,
                    "workflows" => pack.workflows = names,
                    _ => pack.agents = names,
                }
            }
            _ => {}
        }
    }
    if !matches!(src.root.value, Value::Map(_)) || pack.name.is_empty() {
        r.err(src.root.pos, "pack.yaml needs a `name`");
    } else if !crate::skills::manifest::valid_name(&pack.name) {
        r.err(
            src.root.pos,
            format!("`{}` is not a valid pack name", pack.name),
        );
    }
    if pack.version.is_empty() {
        r.err(src.root.pos, "pack.yaml needs a `version`");
    }
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    for (kind, name, pos) in checks {
        match kind {
            "skills" => match crate::skills::Skill::load(&dir.join("skills").join(&name)) {
                Ok(s) => {
                    if let Some(d) = s.script_problem() {
                        warnings.push(format!("skill `{name}`: {}", d.message));
                    }
                }
                Err(e) => problems.push(e.render()),
            },
            "workflows" => {
                let p = dir.join("workflows").join(format!("{name}.yaml"));
                if p.is_file() {
                    if let Err(e) = crate::workflow::load::load_file(&p) {
                        problems.push(e.render());
                    }
                } else {
                    r.err(pos, format!("workflow `{name}` has no file workflows/{name}.yaml"));
                }
            }
            _ => warnings.push(format!(
                "agent `{name}` is not installed: claw has no Claude Code agents (see docs/seed-compat.md)"
            )),
        }
    }
    if let Err(e) = r.finish(&path, src.text) {
        problems.insert(0, e.render());
    }
    if problems.is_empty() {
        Ok((pack, warnings))
    } else {
        Err(PackError::Invalid(problems.join("\n")))
    }
}

/// `1.2.3` (a leading `v` and missing parts allowed) as numbers.
pub fn parse_version(v: &str) -> Option<Vec<u64>> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    core.split('.').map(|p| p.parse().ok()).collect()
}

fn state_dir(dirs: &Dirs) -> PathBuf {
    dirs.home.join("packs")
}

fn manifest_path(dirs: &Dirs, name: &str) -> PathBuf {
    state_dir(dirs).join(format!("{name}.json"))
}

fn journal_path(dirs: &Dirs, name: &str) -> PathBuf {
    state_dir(dirs).join(format!("{name}.journal"))
}

fn staging_dir(dirs: &Dirs, name: &str) -> PathBuf {
    dirs.root.join(format!(".claw-pack-{name}"))
}

/// The installed packs.
pub fn list(dirs: &Dirs) -> Result<Vec<Installed>, PackError> {
    recover(dirs)?;
    let mut out = Vec::new();
    let dir = state_dir(dirs);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_some_and(|x| x == "json") {
            out.push(read_installed(&p)?);
        }
    }
    Ok(out)
}

fn read_installed(p: &Path) -> Result<Installed, PackError> {
    let text = std::fs::read_to_string(p).map_err(|e| io("read", p, &e))?;
    serde_json::from_str(&text).map_err(|e| PackError::Invalid(format!("{}: {e}", p.display())))
}

/// The journal of an install in progress: each target, and where its previous version is kept.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Journal {
    /// `(target relative to root, backup path or none)`.
    moves: Vec<(String, Option<String>)>,
}

/// Puts back the previous state of every install a killed process left half-done.
pub fn recover(dirs: &Dirs) -> Result<Vec<String>, PackError> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(state_dir(dirs)) else {
        return Ok(done);
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "journal") {
            continue;
        }
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&p).map_err(|e| io("read", &p, &e))?;
        let j: Journal = serde_json::from_str(&text)
            .map_err(|e| PackError::Invalid(format!("{}: {e}", p.display())))?;
        for (target, backup) in j.moves.iter().rev() {
            let t = dirs.root.join(target);
            if let Some(b) = backup {
                let b = PathBuf::from(b);
                if b.exists() {
                    remove_any(&t);
                    std::fs::rename(&b, &t).map_err(|e| io("restore", &t, &e))?;
                }
            } else {
                remove_any(&t);
            }
        }
        let _ = std::fs::remove_dir_all(staging_dir(dirs, &name));
        std::fs::remove_file(&p).map_err(|e| io("remove", &p, &e))?;
        done.push(name);
    }
    Ok(done)
}

fn remove_any(p: &Path) {
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

fn sha256(p: &Path) -> Result<String, PackError> {
    let bytes = std::fs::read(p).map_err(|e| io("read", p, &e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> Result<(), PackError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io("read", dir, &e))?;
    for e in entries.flatten() {
        let p = e.path();
        let ft = e.file_type().map_err(|e| io("read", &p, &e))?;
        if ft.is_dir() {
            files_under(&p, base, out)?;
        } else if ft.is_file() {
            out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

/// Options of an install.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOpts {
    /// Downgrade, replace files the pack does not own, or files edited since the last install.
    pub force: bool,
    /// Only an upgrade (or the same version) of a pack already installed (`claw pack update`).
    pub update: bool,
}

/// A git URL is cloned (shallow) into a temporary directory first.
fn fetch(source: &str, dirs: &Dirs) -> Result<(PathBuf, Option<tempfile_dir::Dir>), PackError> {
    let local = Path::new(source);
    if local.is_dir() {
        return Ok((local.to_path_buf(), None));
    }
    let looks_git = source.starts_with("https://")
        || source.starts_with("http://")
        || source.starts_with("git@")
        || source.starts_with("ssh://")
        || source.starts_with("file://")
        || source.ends_with(".git");
    if !looks_git {
        return Err(PackError::Invalid(format!(
            "`{source}` is neither a directory nor a git URL"
        )));
    }
    let tmp = tempfile_dir::Dir::new(&state_dir(dirs))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "packs are fetched with the git CLI"
    )]
    let out = std::process::Command::new("git")
        .args(["clone", "--quiet", "--depth", "1", "--", source])
        .arg(tmp.path())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| PackError::Io(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(PackError::Refused(format!(
            "git clone {source} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((tmp.path().to_path_buf(), Some(tmp)))
}

mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    #[derive(Debug)]
    pub(super) struct Dir(PathBuf);

    impl Dir {
        pub(super) fn new(parent: &Path) -> Result<Self, super::PackError> {
            crate::fsutil::create_dirs_private(parent)
                .map_err(|e| super::io("create", parent, &e))?;
            let p = parent.join(format!(".fetch-{}", ulid::Ulid::new()));
            std::fs::create_dir(&p).map_err(|e| super::io("create", &p, &e))?;
            Ok(Self(p))
        }
        pub(super) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What an install did.
#[derive(Debug)]
pub struct Outcome {
    pub pack: Pack,
    pub previous: Option<String>,
    pub files: usize,
    pub warnings: Vec<String>,
}

/// Installs (or updates) the pack at `source`, all or nothing.
pub fn install(
    dirs: &Dirs,
    source: &str,
    opts: InstallOpts,
    actor: &str,
) -> Result<Outcome, PackError> {
    recover(dirs)?;
    let (dir, _tmp) = fetch(source, dirs)?;
    let (pack, warnings) = validate(&dir)?;
    let mpath = manifest_path(dirs, &pack.name);
    let previous = if mpath.is_file() {
        Some(read_installed(&mpath)?)
    } else {
        None
    };
    if opts.update && previous.is_none() {
        return Err(PackError::Refused(format!(
            "pack `{}` is not installed: use `claw pack install`",
            pack.name
        )));
    }
    if let Some(prev) = &previous
        && !opts.force
        && parse_version(&pack.version) < parse_version(&prev.pack.version)
    {
        return Err(PackError::Refused(format!(
            "pack `{}` {} is older than the installed {}: a downgrade needs --force",
            pack.name, pack.version, prev.pack.version
        )));
    }
    // The targets: each skill directory and each workflow file.
    let mut targets: Vec<(PathBuf, PathBuf)> = Vec::new();
    for s in &pack.skills {
        targets.push((dir.join("skills").join(s), PathBuf::from("skills").join(s)));
    }
    for w in &pack.workflows {
        let f = format!("{w}.yaml");
        targets.push((
            dir.join("workflows").join(&f),
            PathBuf::from("workflows").join(f),
        ));
    }
    // Files the user owns or edited are not replaced without --force.
    let owned = previous
        .as_ref()
        .map(|p| p.files.clone())
        .unwrap_or_default();
    if !opts.force {
        let mut blocked = Vec::new();
        for (_, rel) in &targets {
            let t = dirs.root.join(rel);
            let mut present = Vec::new();
            if t.is_dir() {
                files_under(&t, &dirs.root, &mut present)?;
            } else if t.is_file() {
                present.push(rel.clone());
            }
            for f in present {
                let key = f.display().to_string();
                match owned.get(&key) {
                    Some(sum) if *sum == sha256(&dirs.root.join(&f))? => {}
                    Some(_) => blocked.push(format!("{key} (edited since it was installed)")),
                    None => blocked.push(format!("{key} (not installed by this pack)")),
                }
            }
        }
        if !blocked.is_empty() {
            return Err(PackError::Refused(format!(
                "pack `{}` would replace files it does not own; nothing was changed (--force replaces them):\n  {}",
                pack.name,
                blocked.join("\n  ")
            )));
        }
    }
    // Stage every file.
    let staging = staging_dir(dirs, &pack.name);
    let _ = std::fs::remove_dir_all(&staging);
    let mut files = BTreeMap::new();
    for (src, rel) in &targets {
        let mut list = Vec::new();
        if src.is_dir() {
            files_under(src, &dir, &mut list)?;
        } else {
            list.push(src.strip_prefix(&dir).unwrap_or(src).to_path_buf());
        }
        for f in list {
            let from = dir.join(&f);
            let to = staging.join("new").join(&f);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create", parent, &e))?;
            }
            std::fs::copy(&from, &to).map_err(|e| io("copy", &from, &e))?;
            files.insert(f.display().to_string(), sha256(&to)?);
        }
        let _ = rel;
    }
    // Files of the previous version that this one no longer has go too.
    let mut stale: Vec<String> = owned
        .keys()
        .filter(|k| !files.contains_key(*k))
        .cloned()
        .collect();
    stale.sort();
    // The journal, then the moves.
    let backup = staging.join("old");
    let mut moves: Vec<(String, Option<String>)> = Vec::new();
    for (_, rel) in &targets {
        let b = backup.join(rel);
        moves.push((
            rel.display().to_string(),
            dirs.root
                .join(rel)
                .exists()
                .then(|| b.display().to_string()),
        ));
    }
    for s in &stale {
        let t = dirs.root.join(s);
        if t.exists()
            && !moves
                .iter()
                .any(|(m, _)| s.starts_with(&format!("{m}/")) || m == s)
        {
            moves.push((s.clone(), Some(backup.join(s).display().to_string())));
        }
    }
    crate::fsutil::create_dirs_private(&state_dir(dirs))
        .map_err(|e| io("create", &state_dir(dirs), &e))?;
    let jpath = journal_path(dirs, &pack.name);
    let journal = serde_json::to_vec(&Journal {
        moves: moves.clone(),
    })
    .map_err(|e| PackError::Io(e.to_string()))?;
    crate::fsutil::write_atomic(&jpath, ".journal-", &journal)
        .map_err(|e| io("write", &jpath, &e))?;
    let pause =
        crate::config::env::var("CLAW_PACK_TEST_PAUSE_MS").and_then(|v| v.parse::<u64>().ok());
    for (target, b) in &moves {
        let t = dirs.root.join(target);
        if let Some(b) = b {
            let b = PathBuf::from(b);
            if let Some(parent) = b.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create", parent, &e))?;
            }
            std::fs::rename(&t, &b).map_err(|e| io("move aside", &t, &e))?;
        }
        let new = staging.join("new").join(target);
        if new.exists() {
            if let Some(parent) = t.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create", parent, &e))?;
            }
            std::fs::rename(&new, &t).map_err(|e| io("install", &t, &e))?;
        }
        if let Some(ms) = pause {
            // Tests: a window in which the install is half done (kill -9 lands here).
            eprintln!("paused after {target}");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    let installed = Installed {
        pack: pack.clone(),
        source: source.to_owned(),
        installed_at: crate::time::iso_utc(chrono::Utc::now()),
        files: files.clone(),
    };
    let text = serde_json::to_vec_pretty(&installed).map_err(|e| PackError::Io(e.to_string()))?;
    crate::fsutil::write_atomic(&mpath, ".pack-", &text).map_err(|e| io("write", &mpath, &e))?;
    std::fs::remove_file(&jpath).map_err(|e| io("remove", &jpath, &e))?;
    let _ = std::fs::remove_dir_all(&staging);
    audit(
        dirs,
        actor,
        Action::PackInstall,
        &pack.name,
        serde_json::json!({"version": pack.version, "previous": previous.as_ref().map(|p| p.pack.version.clone()), "files": files.len(), "source": source}),
    );
    Ok(Outcome {
        previous: previous.map(|p| p.pack.version),
        files: files.len(),
        pack,
        warnings,
    })
}

/// Removes exactly the files the pack installed; an edited one needs `force`.
pub fn uninstall(dirs: &Dirs, name: &str, force: bool, actor: &str) -> Result<usize, PackError> {
    recover(dirs)?;
    let mpath = manifest_path(dirs, name);
    if !mpath.is_file() {
        return Err(PackError::Refused(format!(
            "pack `{name}` is not installed"
        )));
    }
    let inst = read_installed(&mpath)?;
    if !force {
        let mut edited = Vec::new();
        for (f, sum) in &inst.files {
            let p = dirs.root.join(f);
            if p.is_file() && sha256(&p)? != *sum {
                edited.push(f.clone());
            }
        }
        if !edited.is_empty() {
            return Err(PackError::Refused(format!(
                "these files of pack `{name}` were edited since it was installed; nothing was removed (--force removes them too):\n  {}",
                edited.join("\n  ")
            )));
        }
    }
    let mut removed = 0;
    for f in inst.files.keys() {
        let p = dirs.root.join(f);
        if std::fs::remove_file(&p).is_ok() {
            removed += 1;
        }
        // Directories the pack's files leave empty go too (never the root's own folders).
        let mut dir = p.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == dirs.root.join("skills") || d == dirs.root.join("workflows") || d == dirs.root {
                break;
            }
            if std::fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    std::fs::remove_file(&mpath).map_err(|e| io("remove", &mpath, &e))?;
    audit(
        dirs,
        actor,
        Action::PackUninstall,
        name,
        serde_json::json!({"version": inst.pack.version, "files": removed}),
    );
    Ok(removed)
}

fn audit(dirs: &Dirs, actor: &str, action: Action, target: &str, detail: serde_json::Value) {
    let event = Event::new(actor, action, target, "ok", detail);
    if let Err(e) = AuditLog::in_dir(&dirs.home).record(&event) {
        tracing::warn!(error = %e, "pack change not audited");
    }
}
