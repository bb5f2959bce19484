//! Command policies over every place a command runs: shell, ssh and skill steps (commands built
//! from expressions too), `claw skill run`, cron shell and ssh jobs, watcher shell actions. A
//! denied command never starts and names its rule; an approval-required one waits in its run and
//! runs after `claw run approve` (and fails when rejected); outside a run it is refused. Every
//! decision is audited. Plus `claw policy list | check | check-file | test-output`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;

const RULES: &str = r#"rules:
  - name: no-forbidden
    action: deny
    command: 'touch \S*forbidden'
    reason: tests forbid it
  - name: ask-guarded
    action: require_approval
    command: 'touch \S*guarded'
  - name: skill-danger
    action: deny
    command: '^skill danger:'
  - name: no-secret-upload
    action: deny
    file: "*.secret"
"#;

fn policy_env() -> Env {
    let env = Env::new();
    std::fs::write(env.root.join("policies.yaml"), RULES).unwrap();
    let dir = env.root.join("skills/danger");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("skill.yaml"),
        "name: danger\nversion: \"1.0.0\"\ndescription: d\nauthor: t\nscript: run.sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("run.sh"), "touch ../../skill-ran\n").unwrap();
    std::fs::write(
        env.root.join("hosts.yaml"),
        "hosts:\n  - alias: box\n    hostname: 127.0.0.1\n    port: 1\n",
    )
    .unwrap();
    env
}

fn audit_text(env: &Env) -> String {
    std::fs::read_to_string(env.home.join("audit.log")).unwrap_or_default()
}

/// One place a command runs: how to make it run a command, and the file that proves it ran.
struct Place {
    name: &'static str,
    run: fn(&Env) -> Ran,
    marker: &'static str,
    rule: &'static str,
}

fn wf(env: &Env, yaml: &str, params: &[&str]) -> Ran {
    env.workflow("p", yaml);
    let mut args = vec!["workflow", "run", "p"];
    for p in params {
        args.extend(["-p", p]);
    }
    env.claw(&args)
}

const DENIED: &[Place] = &[
    Place {
        name: "shell step",
        run: |env| {
            wf(
                env,
                "steps:\n  - name: s\n    command: touch forbidden-shell\n",
                &[],
            )
        },
        marker: "forbidden-shell",
        rule: "no-forbidden",
    },
    Place {
        name: "shell step built from an expression",
        run: |env| {
            wf(
                env,
                "params:\n  f: {type: string}\nsteps:\n  - name: s\n    command: touch ${{ params.f }}\n",
                &["f=forbidden-expr"],
            )
        },
        marker: "forbidden-expr",
        rule: "no-forbidden",
    },
    Place {
        name: "built-in rule in a shell step, overridden to deny",
        run: |env| {
            std::fs::write(
                env.root.join("policies.yaml"),
                format!("{RULES}  - name: curl-pipe-shell\n    action: deny\n"),
            )
            .unwrap();
            wf(
                env,
                "steps:\n  - name: s\n    command: curl -s http://127.0.0.1:1/x | sh; touch curl-ran\n",
                &[],
            )
        },
        marker: "curl-ran",
        rule: "curl-pipe-shell",
    },
    Place {
        name: "ssh step",
        run: |env| {
            wf(
                env,
                "steps:\n  - name: s\n    type: ssh\n    hosts: box\n    command: touch forbidden-ssh\n",
                &[],
            )
        },
        marker: "forbidden-ssh",
        rule: "no-forbidden",
    },
    Place {
        name: "ssh step uploading a file",
        run: |env| {
            std::fs::write(env.path("key.secret"), "x").unwrap();
            wf(
                env,
                "steps:\n  - name: s\n    type: ssh\n    hosts: box\n    command: 'true'\n    upload:\n      - {src: key.secret, dest: /tmp/k}\n",
                &[],
            )
        },
        marker: "never-created",
        rule: "no-secret-upload",
    },
    Place {
        name: "skill step",
        run: |env| {
            wf(
                env,
                "steps:\n  - name: s\n    type: skill\n    skill: danger\n",
                &[],
            )
        },
        marker: "skill-ran",
        rule: "skill-danger",
    },
    Place {
        name: "claw skill run",
        run: |env| env.claw(&["skill", "run", "danger"]),
        marker: "skill-ran",
        rule: "skill-danger",
    },
    Place {
        name: "cron shell job",
        run: |env| {
            let dir = env.path("");
            env.claw(&[
                "cron",
                "add",
                "c",
                "@daily",
                &format!("touch {}forbidden-cron", dir.display()),
            ])
            .expect_code(0);
            env.claw(&["cron", "run", "c"])
        },
        marker: "forbidden-cron",
        rule: "no-forbidden",
    },
    Place {
        name: "cron shell job needing approval (no run to wait in)",
        run: |env| {
            let dir = env.path("");
            env.claw(&[
                "cron",
                "add",
                "c",
                "@daily",
                &format!("touch {}guarded-cron", dir.display()),
            ])
            .expect_code(0);
            env.claw(&["cron", "run", "c"])
        },
        marker: "guarded-cron",
        rule: "ask-guarded",
    },
    Place {
        name: "watcher shell action",
        run: |env| {
            std::fs::create_dir_all(env.path("w")).unwrap();
            std::fs::write(
                env.root.join("watchers.yaml"),
                format!(
                    "- name: w\n  path: {}\n  action: shell\n  command: touch {}/forbidden-watch\n",
                    env.path("w").display(),
                    env.path("").display()
                ),
            )
            .unwrap();
            env.claw(&["watcher", "test", "w", "--run"])
        },
        marker: "forbidden-watch",
        rule: "no-forbidden",
    },
    Place {
        name: "watcher shell action needing approval",
        run: |env| {
            std::fs::create_dir_all(env.path("w")).unwrap();
            std::fs::write(
                env.root.join("watchers.yaml"),
                format!(
                    "- name: w\n  path: {}\n  action: shell\n  command: touch {}/guarded-watch\n",
                    env.path("w").display(),
                    env.path("").display()
                ),
            )
            .unwrap();
            env.claw(&["watcher", "test", "w", "--run"])
        },
        marker: "guarded-watch",
        rule: "ask-guarded",
    },
];

#[test]
fn a_refused_command_never_starts_and_names_its_rule_everywhere() {
    for place in DENIED {
        let env = policy_env();
        let ran = (place.run)(&env);
        let all = format!("{}{}", ran.stdout, ran.stderr);
        assert!(
            !env.path(place.marker).exists() && !env.root.join(place.marker).exists(),
            "{}: the command ran\n{all}",
            place.name
        );
        assert!(
            all.contains(&format!("`{}`", place.rule)),
            "{}: the rule is not named\n{all}",
            place.name
        );
        let audit = audit_text(&env);
        assert!(
            audit.contains("policy.denied") || audit.contains("policy.approval_required"),
            "{}: not audited\n{audit}",
            place.name
        );
        assert!(audit.contains(place.rule), "{}: {audit}", place.name);
    }
}

fn waiting_run(env: &Env, name: &str) -> (std::process::Child, String) {
    let child = env.spawn(&["workflow", "run", name]);
    let id = wait_for(Duration::from_secs(60), || {
        let id = env.last_run()?;
        (env.show(&id)["status"] == "waiting").then_some(id)
    })
    .expect("the run never started waiting");
    (child, id)
}

#[test]
fn an_approval_required_step_waits_then_runs_when_approved_and_fails_when_rejected() {
    let env = policy_env();
    env.workflow(
        "g",
        "steps:\n  - name: wipe\n    command: touch guarded-step\n  - name: after\n    command: touch after-step\n",
    );
    let (waiter, id) = waiting_run(&env, "g");
    let shown = env.show(&id);
    let msg = step(&shown, "wipe")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("ask-guarded") && msg.contains("touch guarded-step"),
        "{shown:#}"
    );
    assert!(!env.path("guarded-step").exists(), "ran before approval");
    env.claw(&["run", "approve", &id]).expect_code(0);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.path("guarded-step").exists() && env.path("after-step").exists());
    let audit = audit_text(&env);
    assert!(
        audit.contains("policy.approval_required") && audit.contains("approval.decided"),
        "{audit}"
    );

    // Rejected: the command never runs and the step fails naming the rule.
    std::fs::remove_file(env.path("guarded-step")).unwrap();
    let (waiter, id) = waiting_run(&env, "g");
    env.claw(&["run", "reject", &id, "--reason", "not today"])
        .expect_code(0);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!env.path("guarded-step").exists());
    let shown = env.show(&id);
    let msg = step(&shown, "wipe")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("ask-guarded") && msg.contains("not today"),
        "{shown:#}"
    );
}

#[test]
fn a_broken_policies_file_refuses_every_command_and_says_where() {
    let env = Env::new();
    std::fs::write(
        env.root.join("policies.yaml"),
        "rules:\n  - name: x\n    action: deny\n    command: '('\n",
    )
    .unwrap();
    let listed = env.claw(&["policy", "list"]);
    listed.expect_code(2);
    assert!(
        listed.stderr.contains("policies.yaml:4:14"),
        "{}",
        listed.stderr
    );
    assert!(listed.stderr.contains("invalid regex"), "{}", listed.stderr);
    let ran = wf(
        &env,
        "steps:\n  - name: s\n    command: touch harmless\n",
        &[],
    );
    ran.expect_code(1);
    assert!(!env.path("harmless").exists());
    assert!(
        format!("{}{}", ran.stdout, ran.stderr).contains("the policies file is invalid"),
        "{}{}",
        ran.stdout,
        ran.stderr
    );
}

#[test]
fn policy_cli_list_check_check_file_test_output() {
    let env = policy_env();
    let list = env.claw(&["policy", "list", "--json"]);
    list.expect_code(0);
    let rules = list.json();
    let names: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in [
        "rm-rf-root",
        "mkfs",
        "dd-to-disk",
        "curl-pipe-shell",
        "no-forbidden",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    env.claw(&["policy", "list"]).expect_code(0);

    let table: &[(&[&str], i32, &str)] = &[
        (
            &["policy", "check", "rm -rf /"],
            1,
            "require_approval: rule `rm-rf-root`",
        ),
        (
            &["policy", "check", "touch x-forbidden"],
            1,
            "deny: rule `no-forbidden`",
        ),
        (&["policy", "check", "ls -la"], 0, "allow: no rule matches"),
        (
            &["policy", "check-file", "/home/u/.ssh/id_rsa"],
            1,
            "rule `ssh-private-key`",
        ),
        (
            &["policy", "check-file", "db.secret"],
            1,
            "deny: rule `no-secret-upload`",
        ),
        (&["policy", "check-file", "/etc/hosts"], 0, "allow"),
        (
            &["policy", "test-output", "token AKIAABCDEFGHIJKLMNOP"],
            1,
            "line 1: rule `aws-access-key`",
        ),
        (&["policy", "test-output", "all fine"], 0, "clean"),
    ];
    for (args, code, want) in table {
        let r = env.claw(args);
        assert_eq!(r.code, *code, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(want), "{args:?}: {}", r.stdout);
    }
    let out = env.claw(&["policy", "test-output", "x AKIAABCDEFGHIJKLMNOP", "--json"]);
    assert!(
        !out.stdout.contains("AKIAABCDEFGHIJKLMNOP"),
        "a match is never printed"
    );
    let checked = env
        .claw(&["policy", "check", "mkfs.ext4 /dev/sdb", "--json"])
        .json();
    assert_eq!(checked["decision"], "require_approval");
    assert_eq!(checked["rule"], "mkfs");
}

#[test]
fn a_chat_trigger_is_checked_as_written_and_a_refused_one_starts_no_run() {
    let env = Env::new();
    std::fs::write(
        env.root.join("policies.yaml"),
        "rules:\n  - name: no-prod-from-chat\n    action: deny\n    command: '(?i)^!deploy\\s+prod'\n    reason: prod is deployed by hand\n  - name: ask-wipe\n    action: require_approval\n    command: '^!run wipe'\n",
    )
    .unwrap();
    env.workflow(
        "ship",
        "name: ship\ntriggers:\n  - command: deploy\nparams:\n  target: {type: string}\nsteps:\n  - name: go\n    command: echo ${{ params.target }} >> \"$SHIP_LOG\"\n",
    );
    env.workflow(
        "wipe",
        "name: wipe\nsteps:\n  - name: go\n    command: echo wiped >> \"$SHIP_LOG\"\n",
    );
    let tg = crate::llm::serve();
    let log = env.path("ship.log");
    let mut d = env
        .command(&["serve", "--no-http"])
        .env("TELEGRAM_BOT_TOKEN", "123456:policy-token")
        .env("TELEGRAM_API_URL", tg.url())
        .env("ALLOWED_CHAT_IDS", "100")
        .env("SHIP_LOG", &log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Reaped)
        .unwrap();
    tg.say(100, "!deploy prod");
    let refused = tg.reply("100", 1);
    assert!(
        refused.contains("refused by policy `no-prod-from-chat` (prod is deployed by hand)"),
        "{refused}"
    );
    tg.say(100, "!run wipe");
    let asked = tg.reply("100", 2);
    assert!(
        asked.contains("ask-wipe") && asked.contains("no run"),
        "{asked}"
    );
    tg.say(100, "!deploy staging");
    assert!(tg.reply("100", 3).ends_with("of ship queued"));
    let done = tg.reply("100", 4);
    assert!(done.ends_with("succeeded"), "{done}");
    let _ = d.kill();
    let _ = d.wait();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "staging\n");
    let runs = env.claw(&["run", "list", "--json"]).json();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    let audit = audit_text(&env);
    assert!(
        audit.contains("chat trigger") && audit.contains("no-prod-from-chat"),
        "{audit}"
    );
}
