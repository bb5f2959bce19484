//! The workflow catalogue: the one place that lists workflow files and finds a workflow by the
//! name or path a person (CLI), a trigger (cron job, watcher, webhook) or a `type: workflow` step
//! gives. Every caller words its own errors; the rules are these, everywhere:
//!
//! 1. An argument that contains `/` or ends in `.yaml`/`.yml` is a **path**. A relative path
//!    starts at the catalogue's base: the current directory ([`Catalogue::new`]), or the folder
//!    of the workflow whose step names it ([`Catalogue::beside`]).
//! 2. Otherwise it is a **name**: the first folder (in order) that holds `<name>.yaml` or
//!    `<name>.yml` wins; the same stem as both `.yaml` and `.yml` in that folder is an error.
//! 3. Else the workflow whose `name:` is that name, among the listed files; several is an error
//!    listing them.
//! 4. Else it is not found: the error says where it looked and suggests the closest name.
//!
//! The folders are the config root's `workflows/`, then the data directory's (where the seed
//! kept them); a sub-workflow's own folder comes first. The listing ([`Catalogue::files`]) holds
//! every `*.yaml`/`*.yml` file of those folders, sorted by stem, a stem in an earlier folder
//! shadowing the same stem in later ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::load::{self, FileErrors};
use super::{StepKind, Workflow};
use crate::config::Dirs;
use crate::diagnostic::did_you_mean;

/// Why a workflow could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindError {
    /// A path (rule 1) that names nothing.
    NoFile(PathBuf),
    /// Several files answer to one name: the same stem as `.yaml` and `.yml` in one folder
    /// (`by_stem`), or several files with that `name:`.
    Ambiguous {
        name: String,
        files: Vec<PathBuf>,
        by_stem: bool,
    },
    /// No file has that stem or `name:`.
    NotFound {
        name: String,
        /// The folders searched, in order.
        looked: Vec<PathBuf>,
        /// `did you mean `…`?`, when a stem or `name:` is close.
        help: Option<String>,
    },
}

impl crate::error::ExitStatus for FindError {
    fn exit_status(&self) -> u8 {
        crate::error::INVALID
    }
}

impl FindError {
    /// The folders searched, comma-separated (for "looked in …").
    pub fn looked_in(looked: &[PathBuf]) -> String {
        looked
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoFile(p) => write!(f, "workflow file not found: {}", p.display()),
            Self::Ambiguous {
                name,
                files,
                by_stem: true,
            } => write!(
                f,
                "`{name}` is ambiguous: both {} exist; remove or rename one (or give the file's path)",
                list(files)
            ),
            Self::Ambiguous { name, files, .. } => write!(
                f,
                "several workflows are named `{name}`: {}; give the file's path",
                list(files)
            ),
            Self::NotFound { name, looked, help } => {
                write!(
                    f,
                    "workflow `{name}` not found (looked in {})",
                    Self::looked_in(looked)
                )?;
                match help {
                    Some(h) => write!(f, "; {h}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for FindError {}

/// Why a workflow could not be found or loaded.
#[derive(Debug, Clone)]
pub enum LoadError {
    Find(FindError),
    /// The file was found and has problems.
    Invalid(FileErrors),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Find(e) => e.fmt(f),
            Self::Invalid(e) => f.write_str(&e.render()),
        }
    }
}

impl std::error::Error for LoadError {}

/// Whether `arg` is a path rather than a name (rule 1).
pub fn is_path(arg: &str) -> bool {
    arg.contains('/') || is_yaml(Path::new(arg))
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The workflow folders and where relative paths start.
#[derive(Debug, Clone)]
pub struct Catalogue {
    folders: Vec<PathBuf>,
    /// `None`: the current directory.
    base: Option<PathBuf>,
}

impl Catalogue {
    /// The catalogue of the CLI and the triggers: the config root's `workflows/`, then the data
    /// directory's; relative paths from the current directory.
    pub fn new(dirs: &Dirs) -> Self {
        Self {
            folders: dirs.workflow_dirs(),
            base: None,
        }
    }

    /// The catalogue a `type: workflow` step of the workflow in `file` sees: that file's folder
    /// first, then [`Catalogue::new`]'s; relative paths from that folder.
    pub fn beside(dirs: &Dirs, file: &Path) -> Self {
        let own = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut folders = vec![own.clone()];
        for d in dirs.workflow_dirs() {
            if !folders.contains(&d) {
                folders.push(d);
            }
        }
        Self {
            folders,
            base: Some(own),
        }
    }

    /// The folders searched, in order.
    pub fn folders(&self) -> &[PathBuf] {
        &self.folders
    }

    /// Every workflow file, sorted by stem (then `.yaml` before `.yml`); a stem in an earlier
    /// folder shadows the same stem in later ones. Both files of a stem written as `.yaml` and
    /// `.yml` in one folder are listed (looking that stem up is an error).
    pub fn files(&self) -> Vec<PathBuf> {
        self.list(false).unwrap_or_default()
    }

    /// [`Catalogue::files`] for those that act on what is missing (the daemon unloads the
    /// schedules and hooks of files that are gone): a folder that does not exist has no files,
    /// but one that cannot be read (too many open files, no permission) is an error, never
    /// "no files".
    pub fn try_files(&self) -> std::io::Result<Vec<PathBuf>> {
        self.list(true)
    }

    fn list(&self, strict: bool) -> std::io::Result<Vec<PathBuf>> {
        let mut by_stem: BTreeMap<String, (usize, Vec<PathBuf>)> = BTreeMap::new();
        for (i, dir) in self.folders.iter().enumerate() {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if strict && e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot read {}: {e}", dir.display()),
                    ));
                }
                Err(_) => continue,
            };
            let mut files = Vec::new();
            for entry in entries {
                match entry {
                    Ok(e) => {
                        let p = e.path();
                        if is_yaml(&p) && !p.is_dir() {
                            files.push(p);
                        }
                    }
                    Err(e) if strict => {
                        return Err(std::io::Error::new(
                            e.kind(),
                            format!("cannot read {}: {e}", dir.display()),
                        ));
                    }
                    Err(_) => {}
                }
            }
            files.sort();
            for f in files {
                let (folder, list) = by_stem.entry(stem(&f)).or_insert((i, Vec::new()));
                if *folder == i {
                    list.push(f);
                }
            }
        }
        Ok(by_stem.into_values().flat_map(|(_, l)| l).collect())
    }

    /// The file `arg` names, by the rules of the module documentation.
    pub fn find(&self, arg: &str) -> Result<PathBuf, FindError> {
        if is_path(arg) {
            let p = Path::new(arg);
            let p = match &self.base {
                Some(base) if p.is_relative() => base.join(p),
                _ => p.to_path_buf(),
            };
            // A directory is "found": loading it says what is wrong.
            return if p.exists() {
                Ok(p)
            } else {
                Err(FindError::NoFile(p))
            };
        }
        for dir in &self.folders {
            let found: Vec<PathBuf> = ["yaml", "yml"]
                .iter()
                .map(|ext| dir.join(format!("{arg}.{ext}")))
                .filter(|p| p.is_file())
                .collect();
            match found.as_slice() {
                [] => {}
                [one] => return Ok(one.clone()),
                _ => {
                    return Err(FindError::Ambiguous {
                        name: arg.to_owned(),
                        files: found,
                        by_stem: true,
                    });
                }
            }
        }
        let files = self.files();
        let named: Vec<(PathBuf, Option<String>)> = files
            .into_iter()
            .map(|f| {
                let name = declared_name(&f);
                (f, name)
            })
            .collect();
        let matches: Vec<PathBuf> = named
            .iter()
            .filter(|(_, n)| n.as_deref() == Some(arg))
            .map(|(f, _)| f.clone())
            .collect();
        match matches.as_slice() {
            [] => {}
            [one] => return Ok(one.clone()),
            _ => {
                return Err(FindError::Ambiguous {
                    name: arg.to_owned(),
                    files: matches,
                    by_stem: false,
                });
            }
        }
        let stems: Vec<String> = named.iter().map(|(f, _)| stem(f)).collect();
        let candidates = stems
            .iter()
            .map(String::as_str)
            .chain(named.iter().filter_map(|(_, n)| n.as_deref()));
        Err(FindError::NotFound {
            name: arg.to_owned(),
            looked: self.folders.clone(),
            help: did_you_mean(arg, candidates),
        })
    }

    /// [`Catalogue::find`], then the workflow loaded.
    pub fn load(&self, arg: &str) -> Result<Workflow, LoadError> {
        let path = self.find(arg).map_err(LoadError::Find)?;
        load::load_file(&path).map_err(LoadError::Invalid)
    }
}

/// The `name:` a workflow file declares, read without checking the rest of the file (so that a
/// file with problems is still found by its name, and its problems reported).
fn declared_name(path: &Path) -> Option<String> {
    let src = crate::yaml::read_file(path, load::MAX_FILE_BYTES, "workflow file").ok()?;
    src.root.get("name")?.scalar_text()
}

/// Problems with the sub-workflows `wf` reaches: children that are missing, ambiguous or do not
/// load, and recursion (`a → b → a`), each named by the step that causes it. Refused before a
/// run starts (`claw workflow validate` and `run`).
pub fn check_children(dirs: &Dirs, wf: &Workflow) -> Vec<String> {
    let mut problems = Vec::new();
    let mut chain = vec![(canonical(&wf.path), wf.name.clone())];
    walk(dirs, wf, &mut chain, &mut problems, 0);
    problems
}

/// The file of the child workflow a `type: workflow` step of the workflow in `from` names, with
/// the error worded for a sub-workflow.
pub fn find_child(dirs: &Dirs, from: &Path, name: &str) -> Result<PathBuf, String> {
    Catalogue::beside(dirs, from)
        .find(name)
        .map_err(|e| child_error(&e))
}

fn child_error(e: &FindError) -> String {
    match e {
        FindError::NoFile(p) => format!("child workflow file not found: {}", p.display()),
        FindError::NotFound { name, looked, help } => format!(
            "child workflow `{name}` not found (looked in {}){}",
            FindError::looked_in(looked),
            help.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
        ),
        FindError::Ambiguous { .. } => format!("child workflow: {e}"),
    }
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn walk(
    dirs: &Dirs,
    wf: &Workflow,
    chain: &mut Vec<(PathBuf, String)>,
    problems: &mut Vec<String>,
    depth: usize,
) {
    for step in wf.steps.iter().chain(&wf.rollback) {
        // A sub-workflow step's child, and the workflows an llm step's tools may start.
        let children: Vec<&str> = match &step.kind {
            StepKind::Workflow(child) => vec![child.workflow.as_str()],
            StepKind::Llm(l) => l
                .tools
                .iter()
                .filter_map(|t| match &t.kind {
                    crate::steps::llm_tools::ToolKind::Workflow(w) => Some(w.as_str()),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        for child in children {
            walk_child(dirs, wf, step, child, chain, problems, depth);
        }
    }
}

/// One child of `step` (see [`walk`]).
fn walk_child(
    dirs: &Dirs,
    wf: &Workflow,
    step: &crate::workflow::Step,
    child: &str,
    chain: &mut Vec<(PathBuf, String)>,
    problems: &mut Vec<String>,
    depth: usize,
) {
    const MAX_DEPTH: usize = 32;
    {
        let at = format!(
            "{}:{}:{}: step `{}`",
            wf.path.display(),
            step.pos.line,
            step.pos.col,
            step.name
        );
        let path = match find_child(dirs, &wf.path, child) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                return;
            }
        };
        let key = canonical(&path);
        if let Some(i) = chain.iter().position(|(p, _)| *p == key) {
            let mut names: Vec<&str> = chain[i..].iter().map(|(_, n)| n.as_str()).collect();
            names.push(&chain[i].1);
            problems.push(format!(
                "{at}: workflow recursion: {} (a workflow may not run itself, directly or through others)",
                names.join(" → ")
            ));
            return;
        }
        if depth >= MAX_DEPTH {
            problems.push(format!(
                "{at}: sub-workflows nest deeper than {MAX_DEPTH} levels"
            ));
            return;
        }
        match load::load_file(&path) {
            Ok(child_wf) => {
                chain.push((key, child_wf.name.clone()));
                walk(dirs, &child_wf, chain, problems, depth + 1);
                chain.pop();
            }
            Err(e) => problems.push(format!(
                "{at}: the child workflow does not load:\n{}",
                e.render()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &str = "steps:\n  - name: a\n    command: 'true'\n";

    struct Fx {
        _tmp: tempfile::TempDir,
        dirs: Dirs,
    }

    impl Fx {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dirs = Dirs {
                home: tmp.path().join("home"),
                root: tmp.path().join("root"),
            };
            std::fs::create_dir_all(dirs.root.join("workflows")).unwrap();
            std::fs::create_dir_all(dirs.home.join("workflows")).unwrap();
            Self { _tmp: tmp, dirs }
        }

        fn root(&self, file: &str, text: &str) -> PathBuf {
            write(&self.dirs.root.join("workflows").join(file), text)
        }

        fn home(&self, file: &str, text: &str) -> PathBuf {
            write(&self.dirs.home.join("workflows").join(file), text)
        }

        fn find(&self, arg: &str) -> Result<PathBuf, FindError> {
            Catalogue::new(&self.dirs).find(arg)
        }
    }

    fn write(p: &Path, text: &str) -> PathBuf {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, text).unwrap();
        p.to_path_buf()
    }

    #[test]
    fn the_config_root_shadows_the_data_directory() {
        let fx = Fx::new();
        let root = fx.root("deploy.yaml", STEPS);
        let home = fx.home("deploy.yaml", STEPS);
        let only_home = fx.home("backup.yml", STEPS);
        assert_eq!(fx.find("deploy"), Ok(root.clone()));
        assert_eq!(fx.find("backup"), Ok(only_home.clone()));
        let files = Catalogue::new(&fx.dirs).files();
        assert_eq!(
            files,
            vec![only_home, root],
            "sorted by stem, shadowed left out"
        );
        assert!(!files.contains(&home));
    }

    #[test]
    fn a_stem_as_yaml_and_yml_in_one_folder_is_ambiguous() {
        let fx = Fx::new();
        let a = fx.root("twin.yaml", STEPS);
        let b = fx.root("twin.yml", STEPS);
        let e = fx.find("twin").unwrap_err();
        assert_eq!(
            e,
            FindError::Ambiguous {
                name: "twin".into(),
                files: vec![a.clone(), b.clone()],
                by_stem: true
            }
        );
        assert!(e.to_string().contains("`twin` is ambiguous"), "{e}");
        assert_eq!(Catalogue::new(&fx.dirs).files(), vec![a, b]);
    }

    #[test]
    fn yml_files_are_found_by_stem() {
        let fx = Fx::new();
        let p = fx.root("nightly.yml", STEPS);
        assert_eq!(fx.find("nightly"), Ok(p));
    }

    #[test]
    fn a_stem_wins_over_a_name_field_and_names_are_found_too() {
        let fx = Fx::new();
        let named = fx.root("a.yaml", &format!("name: b\n{STEPS}"));
        let stem = fx.home("b.yaml", STEPS);
        assert_eq!(fx.find("b"), Ok(stem), "a file stem beats a `name:`");
        let by_name = fx.root("c.yaml", &format!("name: nightly-backup\n{STEPS}"));
        assert_eq!(fx.find("nightly-backup"), Ok(by_name));
        assert_eq!(fx.find("a"), Ok(named));
    }

    #[test]
    fn a_name_field_shared_by_two_files_is_ambiguous() {
        let fx = Fx::new();
        let a = fx.root("a.yaml", &format!("name: twin\n{STEPS}"));
        let b = fx.home("b.yaml", &format!("name: twin\n{STEPS}"));
        let e = fx.find("twin").unwrap_err();
        assert_eq!(
            e,
            FindError::Ambiguous {
                name: "twin".into(),
                files: vec![a, b],
                by_stem: false
            }
        );
        assert!(
            e.to_string().contains("several workflows are named `twin`"),
            "{e}"
        );
    }

    #[test]
    fn a_broken_file_is_found_by_its_name_field() {
        let fx = Fx::new();
        let p = fx.root("x.yaml", "name: broken\nsteps: 5\n");
        assert_eq!(fx.find("broken"), Ok(p));
        assert!(matches!(
            Catalogue::new(&fx.dirs).load("broken"),
            Err(LoadError::Invalid(_))
        ));
    }

    #[test]
    fn not_found_says_where_it_looked_and_suggests() {
        let fx = Fx::new();
        fx.root("deploy.yaml", STEPS);
        fx.root("x.yaml", &format!("name: nightly-backup\n{STEPS}"));
        let FindError::NotFound { looked, help, .. } = fx.find("deplyo").unwrap_err() else {
            panic!("not NotFound")
        };
        assert_eq!(looked, fx.dirs.workflow_dirs());
        assert_eq!(help.as_deref(), Some("did you mean `deploy`?"));
        let FindError::NotFound { help, .. } = fx.find("nightly-backpu").unwrap_err() else {
            panic!("not NotFound")
        };
        assert_eq!(help.as_deref(), Some("did you mean `nightly-backup`?"));
    }

    #[test]
    fn paths_are_taken_from_the_base() {
        let fx = Fx::new();
        let p = fx.root("deploy.yaml", STEPS);
        let abs = p.display().to_string();
        assert_eq!(fx.find(&abs), Ok(p.clone()));
        assert_eq!(
            fx.find("nope/x.yaml"),
            Err(FindError::NoFile(PathBuf::from("nope/x.yaml"))),
            "relative to the current directory, as given"
        );
        // `deploy.yaml` is a path, never a stem: not `workflows/deploy.yaml.yaml`.
        assert!(matches!(fx.find("deploy.yaml"), Err(FindError::NoFile(_))));
        let parent = fx.root("sub/parent.yaml", STEPS);
        let sibling = fx.root("sub/child.yaml", STEPS);
        let beside = Catalogue::beside(&fx.dirs, &parent);
        assert_eq!(beside.find("child.yaml"), Ok(sibling.clone()));
        assert_eq!(
            beside.find("./child.yaml"),
            Ok(parent.with_file_name("./child.yaml"))
        );
        assert_eq!(
            beside.find("../deploy.yaml"),
            Ok(parent.with_file_name("../deploy.yaml"))
        );
    }

    #[test]
    fn a_sub_workflow_sees_its_own_folder_first() {
        let fx = Fx::new();
        let shared = fx.root("child.yaml", STEPS);
        let parent = write(&fx.dirs.root.join("elsewhere/parent.yaml"), STEPS);
        let near = write(&fx.dirs.root.join("elsewhere/child.yaml"), STEPS);
        assert_eq!(Catalogue::beside(&fx.dirs, &parent).find("child"), Ok(near));
        assert_eq!(fx.find("child"), Ok(shared.clone()));
        let other = write(&fx.dirs.root.join("other/parent.yaml"), STEPS);
        assert_eq!(
            Catalogue::beside(&fx.dirs, &other).find("child"),
            Ok(shared)
        );
        let e = find_child(&fx.dirs, &other, "nowhere").unwrap_err();
        assert!(
            e.starts_with("child workflow `nowhere` not found (looked in "),
            "{e}"
        );
    }

    #[test]
    fn recursion_is_found_through_the_catalogue() {
        let fx = Fx::new();
        let a = fx.root(
            "a.yaml",
            "steps:\n  - name: to-b\n    type: workflow\n    workflow: b\n",
        );
        fx.root(
            "b.yaml",
            "steps:\n  - name: back\n    type: workflow\n    workflow: a\n",
        );
        let wf = load::load_file(&a).unwrap();
        let problems = check_children(&fx.dirs, &wf);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("workflow recursion: a → b → a"),
            "{problems:?}"
        );
    }
}
