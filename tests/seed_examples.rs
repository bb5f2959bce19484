//! The seed's own workflow files are valid claw: they validate, list and dry-run; `workflow init`
//! writes the starter workflows once and never overwrites them.

use std::path::{Path, PathBuf};

use crate::common::*;

fn fixtures(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed")
        .join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn all_fixtures() -> Vec<PathBuf> {
    let mut files = fixtures("");
    files.extend(fixtures("packs-core"));
    files
}

#[test]
fn every_seed_workflow_validates() {
    let env = Env::new();
    let mut problems = Vec::new();
    for f in all_fixtures() {
        let ran = env.claw(&["workflow", "validate", &f.display().to_string()]);
        if ran.code != 0 {
            problems.push(format!(
                "{} (exit {}):\n{}",
                f.display(),
                ran.code,
                ran.stderr
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_seed_workflow_dry_runs() {
    let env = Env::new();
    let mut problems = Vec::new();
    for f in all_fixtures() {
        let ran = env.claw(&[
            "workflow",
            "run",
            &f.display().to_string(),
            "--dry-run",
            "--json",
        ]);
        if ran.code != 0 {
            problems.push(format!(
                "{} (exit {}):\n{}",
                f.display(),
                ran.code,
                ran.stderr
            ));
            continue;
        }
        let run = ran.json();
        let bad: Vec<String> = run["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["status"] == "failed")
            .map(|s| s["name"].to_string())
            .collect();
        if run["status"] != "succeeded" || !bad.is_empty() {
            problems.push(format!("{}: {} {bad:?}", f.display(), run["status"]));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Copies `files` into the config root's workflows/ and checks `workflow list` shows each.
fn check_listed(files: &[PathBuf]) {
    let env = Env::new();
    let mut names = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).expect("read fixture");
        std::fs::write(env.root.join("workflows").join(file_name(f)), &text).expect("copy");
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name: "))
            .expect("fixture has a name")
            .trim()
            .to_owned();
        names.push((file_name(f), name));
    }
    let listed = env
        .claw(&["workflow", "list", "--json"])
        .expect_code(0)
        .json();
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), files.len(), "{listed:#?}");
    for (file, name) in &names {
        let entry = listed
            .iter()
            .find(|w| w["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not listed: {listed:#?}"));
        assert_eq!(entry["valid"], true, "{file}: {entry:#}");
    }
    let table = env.claw(&["workflow", "list"]);
    table.expect_code(0);
    for (_, name) in &names {
        assert!(
            table
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name} "))),
            "{name} not in:\n{}",
            table.stdout
        );
    }
}

#[test]
fn seed_workflows_are_listed() {
    check_listed(&fixtures(""));
}

#[test]
fn packs_core_workflows_are_listed() {
    check_listed(&fixtures("packs-core"));
}

#[test]
fn init_writes_starters_that_run_as_written_and_keeps_edits() {
    let env = Env::new();
    let dir = env.root.join("workflows");
    let names = ["hello", "disk-report", "backup-dir"];

    let first = env.claw(&["workflow", "init"]);
    first.expect_code(0);
    assert!(
        first.stdout.contains("claw workflow run hello"),
        "{}",
        first.stdout
    );
    for n in names {
        let p = dir.join(format!("{n}.yaml"));
        assert!(p.is_file(), "{} not written", p.display());
        assert!(
            first.stdout.contains(&format!("created  {}", p.display())),
            "{}",
            first.stdout
        );
        env.claw(&["workflow", "validate", n, "--env"])
            .expect_code(0);
        // As written, on this fresh home: every one succeeds.
        let ran = env.claw(&["workflow", "run", n, "--json"]);
        assert_eq!(ran.code, 0, "{n}: {}{}", ran.stdout, ran.stderr);
        assert_eq!(ran.json()["status"], "succeeded", "{n}");
    }
    // What they show off: params, a schedule the daemon would keep, outputs between steps.
    let shown = env
        .claw(&["cron", "status", "--json"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(shown.contains("disk-report"), "{shown}");
    let hello = env.claw(&["workflow", "run", "hello", "-p", "who=homelab", "--json"]);
    hello.expect_code(0);
    let logs = env.claw(&[
        "run",
        "logs",
        hello.json()["id"].as_str().expect("id"),
        "report",
    ]);
    assert!(logs.stdout.contains("hello, homelab"), "{}", logs.stdout);

    let before: Vec<String> = names
        .iter()
        .map(|n| read(&dir.join(format!("{n}.yaml"))))
        .collect();
    // A person edits one; init again keeps every file as it is.
    let edited = format!("{}\n# my change\n", before[0]);
    std::fs::write(dir.join("hello.yaml"), &edited).expect("edit");
    let second = env.claw(&["workflow", "init"]);
    second.expect_code(0);
    for n in names {
        let p = dir.join(format!("{n}.yaml"));
        assert!(
            second.stdout.contains(&format!("kept     {}", p.display())),
            "{}",
            second.stdout
        );
    }
    assert!(!second.stdout.contains("created "), "{}", second.stdout);
    assert_eq!(read(&dir.join("hello.yaml")), edited);
    assert_eq!(read(&dir.join("disk-report.yaml")), before[1]);
    assert_eq!(read(&dir.join("backup-dir.yaml")), before[2]);
}
