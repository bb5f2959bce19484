//! Skills end to end: the seed's manifests validate, `claw skill run` with arguments, the
//! stripped environment (no secret of claw's environment reaches a skill without the `vault`
//! permission), timeouts that kill the whole process group, Landlock confinement, workflow
//! `skill` steps with outputs, and a SkillHub round trip through a bare git repository.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed")
}

/// Every seed skill directory copied into the fixtures.
fn seed_skill_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for base in ["skills", "packs-core/skills"] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join(base))
            .expect("fixtures")
            .flatten()
            .map(|e| e.path())
            .collect();
        dirs.sort();
        out.extend(dirs);
    }
    out
}

/// Writes `root/skills/<name>/skill.yaml` and its script.
fn skill(env: &Env, name: &str, extra: &str, script_name: &str, script: &str) -> PathBuf {
    let dir = env.root.join("skills").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("skill.yaml"),
        format!(
            "name: {name}\nversion: \"1.0.0\"\ndescription: test skill\nauthor: tests\nscript: {script_name}\n{extra}"
        ),
    )
    .expect("write manifest");
    std::fs::write(dir.join(script_name), script).expect("write script");
    dir
}

#[test]
fn every_seed_manifest_validates_and_its_missing_script_is_reported_as_such() {
    let dirs = seed_skill_dirs();
    assert_eq!(dirs.len(), 21, "{dirs:?}");
    let env = Env::new();
    for dir in &dirs {
        let d = dir.to_str().expect("utf-8");
        let ran = env.claw(&["skill", "validate", "--manifest-only", d]);
        ran.expect_code(0);
        assert!(ran.stdout.starts_with("ok: "), "{}", ran.stdout);

        let ran = env.claw(&["skill", "validate", d]);
        ran.expect_code(2);
        assert!(ran.stdout.starts_with("manifest ok: "), "{}", ran.stdout);
        let diagnostics: Vec<&str> = ran
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: ") && l.contains("skill.yaml:"))
            .collect();
        assert_eq!(diagnostics.len(), 1, "{}", ran.stderr);
        let manifest = std::fs::read_to_string(dir.join("skill.yaml")).expect("read");
        let script = manifest
            .lines()
            .find_map(|l| l.strip_prefix("script: "))
            .expect("script line");
        let line = manifest
            .lines()
            .position(|l| l.starts_with("script: "))
            .expect("script line")
            + 1;
        assert!(
            diagnostics[0].ends_with(&format!("skill.yaml:{line}:9: script not found: {script}")),
            "{}",
            diagnostics[0]
        );
    }
    // All at once, too.
    let all: Vec<&str> = dirs.iter().map(|d| d.to_str().expect("utf-8")).collect();
    let mut args = vec!["skill", "validate", "--manifest-only"];
    args.extend(&all);
    env.claw(&args).expect_code(0);
}

#[test]
fn a_broken_manifest_names_file_line_and_column() {
    let env = Env::new();
    let dir = skill(
        &env,
        "broken",
        "timout: 5\npaths: {reed: [x]}\n",
        "run.sh",
        "true\n",
    );
    let path = dir.join("skill.yaml");
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("author: tests\n", "");
    std::fs::write(&path, text).expect("write");
    let ran = env.claw(&["skill", "validate", dir.to_str().expect("utf-8")]);
    ran.expect_code(2);
    let p = path.display();
    for want in [
        format!("error: {p}:1:1: missing required field `author`"),
        format!(
            "error: {p}:5:1: unknown key `timout` in skill.yaml\n  |\n5 | timout: 5\n  | ^\n  = help: did you mean `timeout`?"
        ),
        format!("error: {p}:6:9: unknown key `reed` in `paths` (expected read, write)"),
    ] {
        assert!(
            ran.stderr.contains(&want),
            "missing:\n{want}\nin:\n{}",
            ran.stderr
        );
    }
    // `list` reports it too, and does not pretend it is fine.
    let list = env.claw(&["skill", "list"]);
    list.expect_code(2);
    assert!(list.stderr.contains(&format!("{p}:5:1")), "{}", list.stderr);
}

#[test]
fn run_passes_arguments_and_returns_the_skills_exit_status() {
    let env = Env::new();
    skill(
        &env,
        "greet",
        "",
        "run.sh",
        "echo \"hello $SKILL_WHO at $SKILL_TARGET_HOST verbose=$SKILL_VERBOSE in $(basename \"$PWD\")\"\nexit \"${SKILL_CODE:-0}\"\n",
    );
    let ran = env.claw(&[
        "skill",
        "run",
        "greet",
        "who=alice",
        "target-host=h1",
        "verbose",
    ]);
    ran.expect_code(0);
    assert_eq!(ran.stdout, "hello alice at h1 verbose=true in greet\n");
    env.claw(&["skill", "run", "greet", "code=7"])
        .expect_code(7);
    let list = env.claw(&["skill", "list", "--json"]).expect_code(0).json();
    assert_eq!(list[0]["name"], "greet");
    // Every run is audited, with the argument names only.
    let audit = read(&env.home.join("audit.log"));
    let runs: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"skill.run\""))
        .collect();
    assert_eq!(runs.len(), 2, "{audit}");
    assert!(runs[0].contains("\"target\":\"greet\"") && runs[0].contains("\"outcome\":\"ok\""));
    assert!(!audit.contains("alice"));
}

#[test]
fn arguments_are_checked_against_the_schema_and_dependencies_before_anything_runs() {
    let env = Env::new();
    skill(
        &env,
        "typed",
        "args:\n  count: {type: integer, required: true}\n",
        "run.sh",
        "touch ran\n",
    );
    let ran = env.claw(&["skill", "run", "typed", "cuont=3"]);
    ran.expect_code(2);
    assert!(
        ran.stderr
            .contains("unknown argument `cuont` (did you mean `count`?)"),
        "{}",
        ran.stderr
    );
    let ran = env.claw(&["skill", "run", "typed", "count=many"]);
    ran.expect_code(2);
    assert!(
        ran.stderr
            .contains("argument `count`: expected an integer, found `many`"),
        "{}",
        ran.stderr
    );
    skill(
        &env,
        "needy",
        "dependencies: [bash, no-such-tool-4711]\n",
        "run.sh",
        "touch ran\n",
    );
    let ran = env.claw(&["skill", "run", "needy"]);
    ran.expect_code(3);
    assert!(
        ran.stderr
            .contains("skill `needy`: missing dependencies: no-such-tool-4711 (not on PATH)"),
        "{}",
        ran.stderr
    );
    assert!(!env.root.join("skills/typed/ran").exists());
    assert!(!env.root.join("skills/needy/ran").exists());
    let ran = env.claw(&["skill", "run", "nope"]);
    ran.expect_code(2);
    assert!(
        ran.stderr.contains("skill not found: nope"),
        "{}",
        ran.stderr
    );
}

const CANARY: &str = "zz-Canary-5a4b3c2d";

#[test]
fn a_skill_without_the_vault_permission_sees_no_secret() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "API_TOKEN", CANARY])
        .expect_code(0);
    env.claw(&["vault", "set", "OTHER_KEY", "other-secret-value"])
        .expect_code(0);
    let dump = "env | sort\n";
    skill(&env, "plain", "", "run.sh", dump);
    skill(
        &env,
        "one",
        "permissions: [vault:API_TOKEN]\n",
        "run.sh",
        dump,
    );
    skill(&env, "all", "permissions: [vault]\n", "run.sh", dump);

    // A secret in claw's own environment (as a token exported in a shell would be).
    let run = |name: &str| -> Ran {
        env.command(&["skill", "run", name, "who=x"])
            .env("CLAW_TEST_TOKEN", CANARY)
            .env("AWS_SECRET_ACCESS_KEY", "aws-canary-123456")
            .output()
            .expect("run")
            .into()
    };
    let plain = run("plain");
    plain.expect_code(0);
    // What bash adds by itself aside, only PATH/HOME/LANG/TERM, the arguments and CLAW_OUTPUT.
    let names: Vec<&str> = plain
        .stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !["_", "PWD", "SHLVL", "OLDPWD"].contains(k))
        .collect();
    for k in &names {
        assert!(
            [
                "CLAW_OUTPUT",
                "CLAW_PROCESS_TREE",
                "HOME",
                "PATH",
                "LANG",
                "TERM",
                "SKILL_WHO"
            ]
            .contains(k),
            "unexpected variable {k} in\n{}",
            plain.stdout
        );
    }
    for k in ["CLAW_OUTPUT", "HOME", "PATH", "SKILL_WHO"] {
        assert!(names.contains(&k), "{k} missing from\n{}", plain.stdout);
    }
    assert!(!plain.stdout.contains(CANARY) && !plain.stdout.contains("aws-canary"));

    // `vault:KEY` gives that key (named as in the vault), masked in what the skill prints.
    let one = run("one");
    one.expect_code(0);
    assert!(one.stdout.contains("API_TOKEN=***\n"), "{}", one.stdout);
    assert!(!one.stdout.contains("OTHER_KEY") && !one.stdout.contains(CANARY));
    let all = run("all");
    assert!(
        all.stdout.contains("API_TOKEN=***\n") && all.stdout.contains("OTHER_KEY=***\n"),
        "{}",
        all.stdout
    );
    assert!(!all.stdout.contains("aws-canary") && !all.stdout.contains("CLAW_TEST_TOKEN"));
    // Nor in the log files claw keeps.
    let logs = env.home.join("logs/skills/all");
    for e in std::fs::read_dir(&logs).expect("logs").flatten() {
        assert!(!read(&e.path()).contains(CANARY), "{}", e.path().display());
    }
}

fn alive(pid: i32) -> bool {
    // A zombie waiting for its reaper is dead for this purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_skill_that_outlives_its_timeout_is_killed_with_its_children() {
    let env = Env::new();
    // The grandchild ignores SIGTERM (an ignored signal survives exec), so only the SIGKILL after
    // the grace period (1 s in tests) stops it.
    let dir = skill(
        &env,
        "slow",
        "timeout: 1\n",
        "run.sh",
        "bash -c \"trap '' TERM; exec sleep 300\" &\necho $! > grandchild.pid\nsleep 300\n",
    );
    let start = Instant::now();
    let ran = env.claw(&["skill", "run", "slow"]);
    ran.expect_code(124);
    assert!(
        ran.stderr.contains("skill `slow` timed out after 1s"),
        "{}",
        ran.stderr
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    let pid: i32 = read(&dir.join("grandchild.pid"))
        .trim()
        .parse()
        .expect("pid");
    let gone = wait_for(Duration::from_secs(10), || (!alive(pid)).then_some(()));
    assert!(gone.is_some(), "grandchild {pid} still running");
}

#[test]
fn a_confined_skill_cannot_read_outside_its_paths() {
    let env = Env::new();
    let info = env.claw(&["doctor"]);
    if info.stdout.contains("landlock: not available") {
        println!(
            "SKIPPED: this kernel has no Landlock ({})",
            info.stdout
                .lines()
                .find(|l| l.contains("landlock"))
                .unwrap_or_default()
        );
        return;
    }
    let outside = env.write("outside/secret.txt", "outside-content-7f");
    let dir = skill(
        &env,
        "boxed",
        "paths: {read: [data], write: [out]}\n",
        "run.sh",
        &format!(
            "cat data/inside.txt\necho written > out/result.txt && echo wrote-inside\ncat {o} || echo read-outside-refused\necho x > {w} || echo write-outside-refused\n",
            o = outside.display(),
            w = env.path("outside/new.txt").display()
        ),
    );
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    std::fs::create_dir_all(dir.join("out")).expect("mkdir");
    std::fs::write(dir.join("data/inside.txt"), "inside-content\n").expect("write");
    let ran = env.claw(&["skill", "run", "boxed"]);
    ran.expect_code(0);
    assert!(
        ran.stdout.contains("inside-content\nwrote-inside\n"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert!(!ran.stdout.contains("outside-content"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("read-outside-refused"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("write-outside-refused"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains("Permission denied"), "{}", ran.stderr);
    assert!(!env.path("outside/new.txt").exists());
    let info = env
        .claw(&["skill", "info", "boxed"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        info.contains("confinement:  Landlock, full")
            || info.contains("confinement:  Landlock, partial"),
        "{info}"
    );
}

#[test]
fn a_workflow_skill_step_passes_args_and_its_outputs_are_read() {
    let env = Env::new();
    skill(
        &env,
        "greet",
        "args:\n  who: {type: string, required: true}\n",
        "run.sh",
        "echo \"greeting hello $SKILL_WHO\"\necho \"greeting=hello $SKILL_WHO\" >> \"$CLAW_OUTPUT\"\n",
    );
    env.workflow(
        "hello",
        r#"params:
  who: {default: bob}
steps:
  - name: greet
    type: skill
    skill: greet
    args: {who: "${{ params.who }}"}
  - name: seed-form
    type: skill
    command: greet
    args: {who: seed}
  - name: show
    command: echo "got ${{ steps.greet.outputs.greeting }} and ${{ steps['seed-form'].outputs.greeting }}"
"#,
    );
    env.claw(&["workflow", "validate", "hello", "--env"])
        .expect_code(0);
    let ran = env.claw(&["workflow", "run", "hello", "-p", "who=carol", "--json"]);
    ran.expect_code(0);
    let run = ran.json();
    assert_eq!(
        step(&run, "greet")["outputs"]["greeting"],
        "hello carol",
        "{run:#}"
    );
    assert!(
        step(&run, "show")["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("got hello carol and hello seed"),
        "{run:#}"
    );
    let audit = read(&env.home.join("audit.log"));
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"skill.run\"") && l.contains("\"ok\""))
            .count(),
        2,
        "{audit}"
    );
}

#[test]
fn a_missing_skill_fails_validate_env_and_the_step() {
    let env = Env::new();
    env.workflow(
        "missing",
        "steps:\n  - name: s\n    type: skill\n    skill: nosuch\n",
    );
    env.claw(&["workflow", "validate", "missing"])
        .expect_code(0);
    let v = env.claw(&["workflow", "validate", "missing", "--env"]);
    v.expect_code(2);
    assert!(
        v.stderr.contains("step `s`: skill not found: nosuch"),
        "{}",
        v.stderr
    );
    let ran = env.claw(&["workflow", "run", "missing", "--json"]);
    ran.expect_code(1);
    let msg = step(&ran.json(), "s")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("skill not found: nosuch"), "{msg}");
    let bad = env.workflow("bad", "steps:\n  - name: s\n    type: skill\n");
    let v = env.claw(&["workflow", "validate", bad.to_str().expect("utf-8")]);
    v.expect_code(2);
    assert!(
        v.stderr
            .contains("bad.yaml:2:5: step `s` (skill) needs `skill: NAME`"),
        "{}",
        v.stderr
    );
}

#[test]
fn create_scaffolds_runnable_skills_and_refuses_to_overwrite() {
    let env = Env::new();
    env.claw(&["skill", "create", "hello-sh"]).expect_code(0);
    env.claw(&[
        "skill",
        "create",
        "hello-py",
        "--type",
        "python",
        "--description",
        "Greets",
    ])
    .expect_code(0);
    assert_eq!(
        env.claw(&["skill", "run", "hello-sh", "who=sh"])
            .expect_code(0)
            .stdout,
        "Hello, sh!\n"
    );
    assert_eq!(
        env.claw(&["skill", "run", "hello-py", "who=py"])
            .expect_code(0)
            .stdout,
        "Hello, py!\n"
    );
    let again = env.claw(&["skill", "create", "hello-sh"]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("already exists; not overwriting it"),
        "{}",
        again.stderr
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hub_push_and_pull_round_trip_through_a_bare_repository() {
    let a = Env::new();
    let b = Env::new();
    let bare = a.path("hub.git");
    std::fs::create_dir_all(&bare).expect("mkdir");
    git(&bare, &["init", "--quiet", "--bare"]);
    let hub = bare.to_str().expect("utf-8");

    a.claw(&["skill", "create", "shared", "--description", "Shared skill"])
        .expect_code(0);
    let pushed = a.claw(&["skill", "hub", "push", "shared", "--hub", hub]);
    pushed.expect_code(0);
    assert!(pushed.stdout.contains("pushed shared"), "{}", pushed.stdout);
    a.claw(&["skill", "hub", "push", "shared", "--hub", hub])
        .expect_code(0);

    // The other machine sees it, pulls it, runs it; the setting may come from the environment.
    let listed = b
        .command(&["skill", "hub", "list", "--json"])
        .env("CLAW_SKILL_HUB", hub)
        .output()
        .expect("run");
    let listed: Ran = listed.into();
    listed.expect_code(0);
    assert_eq!(
        listed.json()[0]["local"],
        "not installed",
        "{}",
        listed.stdout
    );
    b.claw(&["skill", "hub", "pull", "--hub", hub])
        .expect_code(0);
    let pulled = b.root.join("skills/shared");
    assert_eq!(
        read(&pulled.join("skill.yaml")),
        read(&a.root.join("skills/shared/skill.yaml"))
    );
    assert_eq!(
        b.claw(&["skill", "run", "shared"]).expect_code(0).stdout,
        "Hello, world!\n"
    );
    assert_eq!(
        b.claw(&["skill", "hub", "list", "--hub", hub, "--json"])
            .json()[0]["local"],
        "same"
    );

    // A local change shows in diff; pushed from b, it reaches a.
    std::fs::write(pulled.join("run.sh"), "#!/usr/bin/env bash\necho changed\n").expect("write");
    let diff = b.claw(&["skill", "hub", "diff", "shared", "--hub", hub]);
    diff.expect_code(1);
    assert!(diff.stdout.contains("+echo changed"), "{}", diff.stdout);
    b.claw(&["skill", "hub", "push", "shared", "--hub", hub])
        .expect_code(0);
    let updated = a.claw(&["skill", "hub", "pull", "shared", "--hub", hub]);
    updated.expect_code(0);
    assert!(
        updated.stdout.contains("updated shared"),
        "{}",
        updated.stdout
    );
    assert_eq!(
        a.claw(&["skill", "run", "shared"]).expect_code(0).stdout,
        "changed\n"
    );
    let log = std::process::Command::new("git")
        .args(["--git-dir", hub, "log", "--format=%s"])
        .output()
        .expect("git log");
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "Update skill: shared\nUpdate skill: shared\n"
    );
    let none = a.claw(&["skill", "hub", "list"]);
    none.expect_code(2);
    assert!(
        none.stderr.contains("no SkillHub is configured"),
        "{}",
        none.stderr
    );
}

/// Landlock does not cover metadata: a confined skill may still not change a file's mode,
/// owner or times (seccomp), inside its paths or outside; `touch` setting the current time works.
#[test]
fn a_confined_skill_cannot_change_modes_owners_or_times() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new();
    let secret = env.write("outside/identity.txt", "AGE-SECRET-KEY-not-really");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let dir = skill(
        &env,
        "meta",
        "paths: {read: [data], write: [out]}\n",
        "run.sh",
        &format!(
            "chmod 644 {s} || echo chmod-refused\nchmod 777 out/mine.txt || echo chmod-inside-refused\nchown 0:0 out/mine.txt || echo chown-refused\ntouch -d 2001-01-01 out/mine.txt || echo utimes-refused\npython3 -c 'import os; os.chmod(\"{s}\", 0o644)' || echo pychmod-refused\ntouch out/mine.txt && echo touch-now-ok\n",
            s = secret.display()
        ),
    );
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    std::fs::create_dir_all(dir.join("out")).expect("mkdir");
    std::fs::write(dir.join("out/mine.txt"), "x").expect("write");
    std::fs::set_permissions(
        dir.join("out/mine.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let ran = env.claw(&["skill", "run", "meta"]);
    ran.expect_code(0);
    for refused in [
        "chmod-refused",
        "chmod-inside-refused",
        "chown-refused",
        "utimes-refused",
        "pychmod-refused",
        "touch-now-ok",
    ] {
        assert!(
            ran.stdout.contains(refused),
            "{refused}:\n{}\n{}",
            ran.stdout,
            ran.stderr
        );
    }
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&dir.join("out/mine.txt")), 0o600);
    // `claw doctor` says what the sandbox stops and what it does not.
    let doc = env.claw(&["doctor"]);
    assert!(
        doc.stdout.contains("cannot chmod, chown or set file times")
            && doc.stdout.contains("not confined: network access"),
        "{}",
        doc.stdout
    );
}
