//! The documentation's examples are real: every ```yaml block that is a workflow validates, runs
//! as the page says, and the example workflows in `workflows/` validate and run.

use std::path::{Path, PathBuf};

use crate::common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ```yaml blocks of a Markdown file that are workflows (they have `steps:`).
fn workflow_blocks(page: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(page).expect("read page");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => block = Some(String::new()),
            (Some(b), l) if l.starts_with("```") => {
                if b.contains("\nsteps:") || b.starts_with("steps:") {
                    let name = b
                        .lines()
                        .find_map(|l| l.strip_prefix("name: "))
                        .unwrap_or("example")
                        .trim()
                        .to_owned();
                    out.push((name, b.clone()));
                }
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn pages() -> Vec<PathBuf> {
    let mut pages = Vec::new();
    for dir in [repo().join("docs"), repo().join("docs/steps")] {
        for e in std::fs::read_dir(dir).expect("docs dir").flatten() {
            if e.path().extension().is_some_and(|x| x == "md") {
                pages.push(e.path());
            }
        }
    }
    pages.push(repo().join("README.md"));
    pages
}

#[test]
fn every_documented_workflow_validates() {
    let env = Env::new();
    let mut count = 0;
    for page in pages() {
        for (name, yaml) in workflow_blocks(&page) {
            let file = env.write(&format!("docs/{name}.yaml"), &yaml);
            let out = env.claw(&["workflow", "validate", file.to_str().expect("utf-8")]);
            assert_eq!(
                out.code,
                0,
                "{} example `{name}`:\n{}",
                page.display(),
                out.stderr
            );
            count += 1;
        }
    }
    assert!(count >= 8, "only {count} examples found");
}

fn run_doc_example(env: &Env, page: &str, name: &str) -> Ran {
    let blocks = workflow_blocks(&repo().join(page));
    let (_, yaml) = blocks
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{page} has no example `{name}`"));
    env.workflow(name, yaml);
    env.claw(&["workflow", "run", name, "--json"])
}

#[test]
fn documented_examples_behave_as_documented() {
    let env = Env::new();
    let hello = run_doc_example(&env, "docs/workflows.md", "hello");
    hello.expect_code(0);
    assert_eq!(hello.json()["steps"][0]["stdout"], "hello, world\n");

    let fan = run_doc_example(&env, "docs/workflows.md", "fan-out");
    fan.expect_code(0);

    let fail = run_doc_example(&env, "docs/workflows.md", "failure-demo");
    fail.expect_code(1);
    let statuses: Vec<String> = fail.json()["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{}={}",
                s["name"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "flaky-check=failed",
            "report-failure=succeeded",
            "deploy=skipped",
            "cleanup=succeeded"
        ]
    );

    let saga = run_doc_example(&env, "docs/workflows.md", "saga");
    saga.expect_code(1);
    let names: Vec<String> = saga.json()["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["phase"] == "compensation")
        .map(|s| s["stdout"].as_str().unwrap_or("").trim().to_owned())
        .collect();
    assert_eq!(names, ["refund", "release the reservation"]);

    let outputs = run_doc_example(&env, "docs/workflows.md", "outputs-demo");
    outputs.expect_code(0);
    let j = outputs.json();
    assert_eq!(j["steps"][2]["stdout"], "v1.4.2, 3 items\n");
    assert_eq!(j["outputs"]["version"], "1.4.2");
    assert_eq!(j["steps"][0]["outputs"]["notes"], "line one\nline two");

    let quoting = run_doc_example(&env, "docs/workflows.md", "quoting");
    quoting.expect_code(0);
    let value = "it's $HOME; `id` \"quoted\"";
    assert_eq!(
        quoting.json()["steps"][0]["stdout"].as_str().unwrap_or(""),
        format!("{value}\n{value}\n{value}\n")
    );

    run_doc_example(&env, "docs/steps/shell.md", "shell-demo").expect_code(0);
}

#[test]
fn example_workflows_validate_and_hello_runs() {
    let env = Env::new();
    let dir = repo().join("workflows");
    let out = env.claw(&[
        "--root",
        repo().to_str().expect("utf-8"),
        "workflow",
        "validate",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("hello.yaml"), "{}", out.stdout);
    let run = env.claw(&[
        "workflow",
        "run",
        dir.join("hello.yaml").to_str().expect("utf-8"),
        "-p",
        "who=O'Brien",
        "--json",
    ]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["steps"][0]["stdout"], "hello, O'Brien\n");
    assert_eq!(
        j["steps"][3]["stdout"],
        "hello, O'Brien: 14 bytes, 2 words\n"
    );
}
