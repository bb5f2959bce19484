//! The documentation's examples are real: every ```yaml block that is a workflow validates, runs
//! as the page says, and the example workflows in `workflows/` validate and run; every `claw`
//! command the docs show parses, the walkthroughs run as written, and every message the docs
//! quote is one the code prints.

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

/// The pages whose examples are checked: docs/, docs/steps/ and the README.
fn all_pages() -> Vec<(String, String)> {
    pages()
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(repo()).unwrap_or(&p).display().to_string();
            (name, std::fs::read_to_string(&p).expect("read page"))
        })
        .collect()
}

/// The shell lines of a page: every line of a ```sh/bash/console/shell block, and `$ ` lines of
/// the other blocks (a transcript's command). A line ending in `# illustrative` is not checked.
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lang: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("```") {
            lang = match lang {
                None => Some(rest.trim().to_owned()),
                Some(_) => None,
            };
            continue;
        }
        let Some(l) = &lang else { continue };
        let cmd = match t.strip_prefix("$ ") {
            Some(c) => c,
            None if matches!(l.as_str(), "sh" | "bash" | "console" | "shell") => t,
            None => continue,
        };
        if cmd.ends_with("# illustrative") || !cmd.contains("claw") {
            continue;
        }
        out.push((n + 1, cmd.to_owned()));
    }
    out
}

/// `line` without its comment (a `#` after whitespace, outside quotes).
fn without_comment(line: &str) -> &str {
    let (mut single, mut double, mut prev_space) = (false, false, true);
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => return &line[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// The claw invocations of a shell line: the arguments after `claw` of each command in it
/// (split at `&&`, `||`, `|`, `;` and redirections; `VAR=value` and `sudo` prefixes dropped;
/// `<(claw …)` and a quoted `'claw …'` looked into). Synopsis brackets are dropped.
fn claw_invocations(line: &str) -> Vec<Vec<String>> {
    let Some(words) = shlex::split(without_comment(line)) else {
        return vec![vec!["<unbalanced quotes>".to_owned()]];
    };
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let flush = |cmd: &mut Vec<String>, out: &mut Vec<Vec<String>>| {
        let mut rest = cmd
            .iter()
            .skip_while(|w| w.as_str() == "sudo" || (w.contains('=') && !w.starts_with('-')))
            .cloned();
        if rest.next().as_deref() == Some("claw") {
            out.push(
                rest.map(|w| w.replace(['[', ']'], ""))
                    .filter(|w| !w.is_empty())
                    .collect(),
            );
        }
        cmd.clear();
    };
    let mut skip_next = false;
    for w in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        if let Some(inner) = w.strip_prefix("<(").and_then(|r| r.strip_suffix(')')) {
            out.extend(claw_invocations(inner));
            continue;
        }
        if w.contains("claw ") && (w.starts_with("claw ") || w.starts_with("source <(")) {
            let inner = w.trim_start_matches("source ");
            let inner = inner
                .strip_prefix("<(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or(inner);
            out.extend(claw_invocations(inner));
            continue;
        }
        match w.as_str() {
            "&&" | "||" | "|" | ";" => flush(&mut current, &mut out),
            ">" | ">>" | "<" | "2>" => {
                flush(&mut current, &mut out);
                skip_next = true;
            }
            _ => current.push(w),
        }
    }
    flush(&mut current, &mut out);
    out
}

#[test]
fn shell_lines_are_split_into_claw_invocations() {
    let v = |s: &[&str]| s.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        claw_invocations("echo 'source <(claw completions bash)' >> ~/.bashrc"),
        vec![v(&["completions", "bash"])]
    );
    assert_eq!(
        claw_invocations("CLAW_LOG=debug claw workflow run deploy   # store opened"),
        vec![v(&["workflow", "run", "deploy"])]
    );
    assert_eq!(
        claw_invocations("claw cron run disk && claw cron logs disk -n 1"),
        vec![
            v(&["cron", "run", "disk"]),
            v(&["cron", "logs", "disk", "-n", "1"])
        ]
    );
    assert_eq!(
        claw_invocations("echo -n \"$TOKEN\" | sudo claw vault list [--json]"),
        vec![v(&["vault", "list", "--json"])]
    );
    // A command claw does not accept is caught.
    assert!(
        claw::cli::command()
            .try_get_matches_from(["claw", "watcher", "watch"])
            .is_err()
    );
}

/// Every `claw …` command the docs show is one the command line accepts: its subcommands,
/// flags and values parse (placeholders such as RUN or NAME stand for any value).
#[test]
fn every_claw_command_in_the_docs_parses() {
    let mut checked = 0;
    let mut bad = Vec::new();
    for (page, text) in all_pages() {
        for (n, line) in shell_lines(&text) {
            for args in claw_invocations(&line) {
                checked += 1;
                let argv = std::iter::once("claw".to_owned()).chain(args.iter().cloned());
                if let Err(e) = claw::cli::command().try_get_matches_from(argv) {
                    use clap::error::ErrorKind;
                    if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                        bad.push(format!(
                            "{page}:{n}: `claw {}`: {}",
                            args.join(" "),
                            e.kind()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 60, "only {checked} commands found");
    assert!(
        bad.is_empty(),
        "commands the docs show that claw does not accept:\n{}",
        bad.join("\n")
    );
}

/// The literal pieces of a message as the docs quote it (values such as paths, numbers and
/// `names` removed): runs of at least three words.
fn message_fragments(msg: &str) -> Vec<String> {
    let mut fragments = Vec::new();
    let mut piece = String::new();
    let push = |piece: &mut String, fragments: &mut Vec<String>| {
        let t = piece.trim_matches(|c: char| c.is_whitespace() || ",.;:()".contains(c));
        if t.split_whitespace()
            .filter(|w| w.chars().any(char::is_alphabetic))
            .count()
            >= 3
        {
            fragments.push(t.to_owned());
        }
        piece.clear();
    };
    let mut in_tick = false;
    for word in msg.split_inclusive(' ') {
        let ticks = word.matches('`').count();
        let value = in_tick
            || ticks > 0
            || word.contains(['/', '…', '"', '(', ')'])
            || word.chars().any(|c| c.is_ascii_digit())
            || (word.trim().len() > 1
                && word
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_'));
        if ticks % 2 == 1 {
            in_tick = !in_tick;
        }
        if value {
            push(&mut piece, &mut fragments);
        } else {
            piece.push_str(word);
        }
    }
    push(&mut piece, &mut fragments);
    fragments
}

/// Every message the docs quote (an `error:`/`warning:`/`note:`/`claw:` line of an example
/// transcript, or a `("…")` in the text) is one the code prints: a literal piece of it is in
/// the source.
#[test]
fn every_message_the_docs_quote_is_printed_by_the_code() {
    let mut source = String::new();
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).expect("src").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                source.push_str(&std::fs::read_to_string(&p).expect("read"));
            }
        }
    }
    // A string continued on the next line (`\` at the end) reads as one.
    let mut joined = String::with_capacity(source.len());
    let mut lines = source.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(head) = l.strip_suffix('\\') {
            joined.push_str(head);
            if let Some(next) = lines.peek() {
                let trimmed = next.trim_start().to_owned();
                lines.next();
                joined.push_str(&trimmed);
                joined.push('\n');
            }
        } else {
            joined.push_str(l);
            joined.push('\n');
        }
    }
    let mut quoted = Vec::new();
    for (page, text) in all_pages() {
        let mut in_block = false;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if in_block {
                for prefix in ["error: ", "warning: ", "note: ", "claw: "] {
                    if let Some(msg) = t.strip_prefix(prefix) {
                        // Past a `file:line:col: ` location.
                        let msg = msg
                            .split_once(": ")
                            .filter(|(loc, _)| loc.contains(':') && loc.contains('.'))
                            .map_or(msg, |(_, m)| m);
                        quoted.push((format!("{page}:{}", n + 1), msg.to_owned()));
                    }
                }
            } else {
                for part in t.split("(\"").skip(1) {
                    if let Some((q, _)) = part.split_once("\")")
                        && q.contains(' ')
                    {
                        quoted.push((format!("{page}:{}", n + 1), q.to_owned()));
                    }
                }
            }
        }
    }
    let mut bad = Vec::new();
    let mut checked = 0;
    for (at, msg) in &quoted {
        let fragments = message_fragments(msg);
        if fragments.is_empty() {
            continue;
        }
        checked += 1;
        if !fragments.iter().any(|f| joined.contains(f.as_str())) {
            bad.push(format!("{at}: {msg:?} (looked for {fragments:?})"));
        }
    }
    assert!(checked >= 5, "only {checked} quoted messages found");
    assert!(
        bad.is_empty(),
        "messages the docs quote that the code does not print:\n{}",
        bad.join("\n")
    );
}

/// Runs, as written and in order, each line of the ```sh block of `page` that contains
/// `marker`, with the claw under test first on PATH and a fresh data directory; lines with a
/// `…` placeholder (an id from an earlier output) are left out. Each must exit 0.
fn run_walkthrough(env: &Env, root: &Path, page: &str, marker: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(page)).expect("page");
    let block = text
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(inside, _)| inside))
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("{page}: no ```sh block with {marker:?}"));
    let bin = Path::new(env!("CARGO_BIN_EXE_claw"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut outputs = Vec::new();
    for line in block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains('…'))
    {
        let out = std::process::Command::new("bash")
            .args(["-c", line])
            .env("PATH", &path)
            .env("CLAW_HOME", &env.home)
            .env("CLAW_ROOT", root)
            .current_dir(root)
            .output()
            .expect("bash");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{page}: `{line}` failed:\n{text}");
        outputs.push(text);
    }
    outputs
}

#[test]
fn the_walkthroughs_run_as_written() {
    let env = Env::new();
    let out = run_walkthrough(&env, &env.root, "docs/cron.md", "claw cron run disk");
    assert!(
        out.last().is_some_and(|o| o.contains("exit_code: 0")),
        "{out:?}"
    );

    // The README's first steps, in a copy of the repository's workflows.
    let env = Env::new();
    for name in ["hello", "disk-report", "backup-dir"] {
        std::fs::copy(
            repo().join(format!("workflows/{name}.yaml")),
            env.root.join(format!("workflows/{name}.yaml")),
        )
        .expect("copy");
    }
    let out = run_walkthrough(&env, &env.root, "README.md", "claw workflow validate");
    assert!(out[1].contains("succeeded"), "{out:?}");

    let env = Env::new();
    let out = run_walkthrough(&env, &env.root, "docs/intake.md", "claw intake run");
    assert!(
        out[1].contains("disk-usage") && out[1].contains("planned"),
        "{out:?}"
    );
    assert!(out[3].contains("\"status\": \"ok\""), "{out:?}");
}
