//! Sub-workflows: finding the child a `type: workflow` step names, and refusing recursion before
//! anything runs.

use std::path::{Path, PathBuf};

use crate::config::Dirs;
use crate::workflow::load;
use crate::workflow::{StepKind, Workflow};

fn is_yaml(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The file of the workflow `name`, as a step of the workflow in `from` names it: a path
/// (relative to `from`'s directory), a file stem in the workflow directories, or a `name:`.
pub fn locate(dirs: &Dirs, from: &Path, name: &str) -> Result<PathBuf, String> {
    let as_path = Path::new(name);
    if name.contains('/') || is_yaml(as_path) {
        let p = if as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            from.parent().unwrap_or(Path::new(".")).join(as_path)
        };
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("child workflow file not found: {}", p.display()))
        };
    }
    let mut sibling_dirs = Vec::new();
    if let Some(d) = from.parent() {
        sibling_dirs.push(d.to_path_buf());
    }
    for d in dirs.workflow_dirs() {
        if !sibling_dirs.contains(&d) {
            sibling_dirs.push(d);
        }
    }
    for dir in &sibling_dirs {
        for ext in ["yaml", "yml"] {
            let p = dir.join(format!("{name}.{ext}"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    for dir in &sibling_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_yaml(p))
            .collect();
        files.sort();
        for p in files {
            if load::load_file(&p).is_ok_and(|wf| wf.name == name) {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "child workflow `{name}` not found (looked in {})",
        sibling_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Problems with the sub-workflows `wf` reaches: children that are missing or do not load, and
/// recursion (`a → b → a`), each named by the step that causes it.
pub fn check(dirs: &Dirs, wf: &Workflow) -> Vec<String> {
    let mut problems = Vec::new();
    let mut chain = vec![(canonical(&wf.path), wf.name.clone())];
    walk(dirs, wf, &mut chain, &mut problems, 0);
    problems
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
    const MAX_DEPTH: usize = 32;
    for step in wf.steps.iter().chain(&wf.rollback) {
        let StepKind::Workflow(child) = &step.kind else {
            continue;
        };
        let at = format!(
            "{}:{}:{}: step `{}`",
            wf.path.display(),
            step.pos.line,
            step.pos.col,
            step.name
        );
        let path = match locate(dirs, &wf.path, &child.workflow) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
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
            continue;
        }
        if depth >= MAX_DEPTH {
            problems.push(format!(
                "{at}: sub-workflows nest deeper than {MAX_DEPTH} levels"
            ));
            continue;
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
