//! `claw cron ...` on the seed's `cron/jobs.json`: read and rewritten compatibly, jobs run with
//! the seed's log files and status fields, unique id prefixes, schedules checked before saving.

use crate::common::{Env, read};

const SEED_JOBS: &str = include_str!("fixtures/seed/cron/jobs.json");

fn seeded() -> Env {
    let env = Env::new();
    env.write("home/cron/jobs.json", SEED_JOBS);
    env
}

fn jobs(env: &Env) -> serde_json::Value {
    serde_json::from_str(&read(&env.home.join("cron/jobs.json"))).expect("jobs.json is JSON")
}

/// The keys of each job, in file order.
fn key_order(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("    \""))
        .filter_map(|l| l.split_once('"').map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn seed_jobs_are_listed_and_rewritten_compatibly() {
    let env = seeded();
    let list = env.claw(&["cron", "list", "--json"]).expect_code(0).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["disk-report", "morning-brief", "greet"]);
    // Disabled jobs have no next run.
    assert!(list[2]["next_run"].is_null());
    assert!(list[0]["next_run"].is_string());
    let table = env.claw(&["cron", "list"]).expect_code(0).stdout.clone();
    assert!(
        table.contains("f47ac10b")
            && table.contains("greet")
            && table.contains("*/15 9-17 * * 1-5"),
        "{table}"
    );

    env.claw(&["cron", "enable", "f47a"]).expect_code(0);
    let mut want: serde_json::Value = serde_json::from_str(SEED_JOBS).unwrap();
    want[2]["enabled"] = true.into();
    assert_eq!(jobs(&env), want, "only `enabled` changed");
    let text = read(&env.home.join("cron/jobs.json"));
    assert_eq!(
        key_order(&text),
        key_order(SEED_JOBS),
        "the seed's field order is kept"
    );
    // Idempotent, as in the seed.
    let again = env.claw(&["cron", "enable", "f47a"]);
    again.expect_code(0);
    assert!(again.stdout.contains("already enabled"), "{}", again.stdout);
    env.claw(&["cron", "disable", "f47ac10b-58cc-4372-a567-0e02b2c3d479"])
        .expect_code(0);
    env.claw(&["cron", "disable", "f47a"]).expect_code(0);
    assert_eq!(
        jobs(&env),
        serde_json::from_str::<serde_json::Value>(SEED_JOBS).unwrap()
    );
    // No temp files are left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(env.home.join("cron"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unknown_fields_survive_a_rewrite() {
    let env = Env::new();
    let mut v: serde_json::Value = serde_json::from_str(SEED_JOBS).unwrap();
    v[0]["future_field"] = serde_json::json!({"nested": [1, "two"]});
    env.write(
        "home/cron/jobs.json",
        &serde_json::to_string_pretty(&v).unwrap(),
    );
    env.claw(&["cron", "disable", "7c9e6679"]).expect_code(0);
    let after = jobs(&env);
    assert_eq!(after[0]["future_field"], v[0]["future_field"]);
    assert_eq!(after[0]["enabled"], false);
}

#[test]
fn prefixes_must_be_unique() {
    let env = seeded();
    let amb = env.claw(&["cron", "run", "7c9e"]);
    amb.expect_code(1);
    assert!(
        amb.stderr.contains("`7c9e` matches 2 jobs")
            && amb.stderr.contains("disk-report")
            && amb.stderr.contains("morning-brief"),
        "{}",
        amb.stderr
    );
    let none = env.claw(&["cron", "remove", "0000"]);
    none.expect_code(1);
    assert!(
        none.stderr.contains("no job matches `0000`"),
        "{}",
        none.stderr
    );
    assert_eq!(
        jobs(&env),
        serde_json::from_str::<serde_json::Value>(SEED_JOBS).unwrap()
    );
}

#[test]
fn shell_job_runs_with_the_seed_log_and_status() {
    let env = seeded();
    let ran = env.claw(&["cron", "run", "f47a"]);
    ran.expect_code(0);
    assert_eq!(ran.stdout, "hello world from claude\n");
    let j = &jobs(&env)[2];
    assert_eq!(j["last_status"], "ok");
    assert!(j["last_run"].as_str().unwrap().ends_with("+00:00"));
    let log = std::path::PathBuf::from(j["last_output_file"].as_str().unwrap());
    assert!(
        log.starts_with(
            env.home
                .join("cron/output/f47ac10b-58cc-4372-a567-0e02b2c3d479")
        )
    );
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == "20240502T081542Z.log".len() && name.ends_with("Z.log"),
        "{name}"
    );
    let text = read(&log);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "exit_code: 0");
    assert!(lines[1].starts_with("timestamp: "));
    assert_eq!(lines[2], "---");
    assert_eq!(lines[3], "hello world from claude");
    let logs = env
        .claw(&["cron", "logs", "f47a"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        logs.contains("hello world from claude") && logs.contains("==> "),
        "{logs}"
    );

    // A failing job: exit status 1, `error(<exit>)`, output kept.
    env.claw(&["cron", "add", "fail", "@daily", "echo oops >&2; exit 3"])
        .expect_code(0);
    let id = jobs(&env)[3]["id"].as_str().unwrap().to_owned();
    let failed = env.claw(&["cron", "run", &id[..8]]);
    failed.expect_code(1);
    let j = &jobs(&env)[3];
    assert_eq!(j["last_status"], "error(3)");
    let text = read(std::path::Path::new(
        j["last_output_file"].as_str().unwrap(),
    ));
    assert!(
        text.starts_with("exit_code: 3\n") && text.contains("oops"),
        "{text}"
    );
}

#[test]
fn a_claude_job_without_its_program_fails_clearly() {
    let env = seeded();
    let ran = env.claw(&["cron", "run", "7c9e1234"]);
    ran.expect_code(1);
    assert!(
        ran.stdout.contains("`claude` is not on PATH"),
        "{}",
        ran.stdout
    );
    // Its output_channel is tried (no Telegram token here: reported, the job's status unchanged).
    assert!(
        ran.stderr
            .contains("the output was not sent to telegram:123456: telegram is not configured"),
        "{}",
        ran.stderr
    );
    assert_eq!(jobs(&env)[1]["last_status"], "error(1)");
}

#[test]
fn add_checks_the_schedule_and_next_shows_fires() {
    let env = Env::new();
    let bad = env.claw(&["cron", "add", "x", "61 * * * *", "true"]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("minute field `61` out of range 0-59"),
        "{}",
        bad.stderr
    );
    let bad_tz = env.claw(&["cron", "add", "x", "@daily", "true", "--tz", "Europe/Berln"]);
    bad_tz.expect_code(2);
    assert!(
        bad_tz.stderr.contains("unknown time zone `Europe/Berln`"),
        "{}",
        bad_tz.stderr
    );
    assert!(!env.home.join("cron/jobs.json").exists());

    let added = env
        .claw(&[
            "cron",
            "add",
            "nightly",
            "30 2 * * *",
            "true",
            "--tz",
            "Europe/Berlin",
            "--disabled",
            "--json",
        ])
        .expect_code(0)
        .json();
    let id = added["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(added["enabled"], false);
    assert_eq!(added["tz"], "Europe/Berlin");
    assert_eq!(added["job_type"], "shell");
    assert_eq!(added["output_channel"], "file");
    let next = env
        .claw(&["cron", "next", &id[..6], "-n", "3", "--json"])
        .expect_code(0)
        .json();
    let fires = next[0]["next"].as_array().unwrap();
    assert_eq!(fires.len(), 3);
    for f in fires {
        let local = f["local"].as_str().unwrap();
        assert!(local.contains("T02:30:00+0"), "{local}");
    }
    let text = env
        .claw(&["cron", "next", &id[..6], "-n", "2"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(text.contains("CET") || text.contains("CEST"), "{text}");
    assert!(text.contains("UTC"), "{text}");
    env.claw(&["cron", "remove", &id[..6]]).expect_code(0);
    assert_eq!(jobs(&env), serde_json::json!([]));
}

#[test]
fn workflow_jobs_run_through_the_engine_and_workflows_show_their_schedules() {
    let env = Env::new();
    env.workflow(
        "tick",
        "schedule:\n  - '0 9 * * MON-FRI'\n  - {cron: every 90m, tz: UTC}\ntz: America/New_York\nparams:\n  who: {default: nobody}\nsteps:\n  - name: hi\n    command: echo \"hi ${{ params.who }}\"\n",
    );
    env.claw(&["workflow", "validate", "tick"]).expect_code(0);
    let next = env
        .claw(&["cron", "next", "tick", "-n", "2", "--json"])
        .expect_code(0)
        .json();
    assert_eq!(next.as_array().unwrap().len(), 2);
    assert_eq!(next[0]["tz"], "America/New_York");
    assert!(
        next[0]["next"][0]["local"]
            .as_str()
            .unwrap()
            .contains("T09:00:00-0")
    );
    assert_eq!(next[1]["tz"], "UTC");

    env.claw(&[
        "cron", "add", "wf", "@hourly", "tick", "--type", "workflow", "--arg", "who=cron",
    ])
    .expect_code(0);
    let id = jobs(&env)[0]["id"].as_str().unwrap().to_owned();
    let ran = env.claw(&["cron", "run", &id]);
    ran.expect_code(0);
    assert!(ran.stdout.contains("succeeded"), "{}", ran.stdout);
    assert_eq!(jobs(&env)[0]["last_status"], "ok");
    // The run is in the store like any other, with its trigger.
    let run = env.last_run().expect("a run");
    let shown = env.show(&run);
    assert_eq!(shown["trigger"]["type"], "cron");
    assert_eq!(shown["params"]["who"], "cron");
}

#[test]
fn bad_workflow_schedule_is_a_positioned_error() {
    let env = Env::new();
    env.workflow(
        "w",
        "schedule: '0 25 * * *'\nsteps:\n  - {name: a, command: 'true'}\n",
    );
    let r = env.claw(&["workflow", "validate", "w"]);
    r.expect_code(2);
    assert!(
        r.stderr
            .contains("w.yaml:1:11: invalid schedule: hour field `25` out of range 0-23"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_corrupt_jobs_file_is_named_with_its_position() {
    let env = Env::new();
    env.write(
        "home/cron/jobs.json",
        "[\n  {\"id\": \"x\", \"name\": \"n\"\n]\n",
    );
    let r = env.claw(&["cron", "list"]);
    r.expect_code(2);
    assert!(r.stderr.contains("cron/jobs.json:3:"), "{}", r.stderr);
}

#[test]
fn skill_jobs_run_the_skill_with_their_args() {
    let env = Env::new();
    let dir = env.root.join("skills/greet");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("skill.yaml"),
        "name: greet\nversion: \"1.0.0\"\ndescription: greets\nauthor: tests\nscript: run.sh\n",
    )
    .expect("manifest");
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho \"hello $SKILL_WHO\"\n").expect("script");
    let add = env.claw(&[
        "cron",
        "add",
        "greeter",
        "@daily",
        "greet",
        "--type",
        "skill",
        "--arg",
        "who=world",
        "--json",
    ]);
    add.expect_code(0);
    let id = add.json()["id"].as_str().expect("id").to_owned();
    let ran = env.claw(&["cron", "run", &id[..8]]);
    ran.expect_code(0);
    let job = &jobs(&env)[0];
    assert_eq!(job["last_status"], "ok");
    let log = read(std::path::Path::new(
        job["last_output_file"].as_str().expect("log"),
    ));
    assert!(log.starts_with("exit_code: 0\n"), "{log}");
    assert!(log.contains("hello world"), "{log}");
}

#[test]
fn webhook_jobs_post_their_args_as_json() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("line");
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).expect("body");
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nreceived")
            .expect("answer");
        (head, String::from_utf8(body).expect("utf-8"))
    });
    let env = Env::new();
    let url = format!("http://127.0.0.1:{port}/hook");
    let add = env.claw(&[
        "cron", "add", "ping", "@hourly", &url, "--type", "webhook", "--arg", "host=nas", "--json",
    ]);
    add.expect_code(0);
    let id = add.json()["id"].as_str().expect("id").to_owned();
    let ran = env.claw(&["cron", "run", &id]);
    ran.expect_code(0);
    let (head, body) = server.join().expect("server");
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("json"),
        serde_json::json!({"host": "nas"})
    );
    assert_eq!(jobs(&env)[0]["last_status"], "ok");
}

/// A job is named by its name too, everywhere an id is taken (as `cron add` takes a name and
/// `cron list` shows it); a name two jobs share is ambiguous. The docs' own example works as
/// written, and the seed's `--limit` spelling of `-n`.
#[test]
fn jobs_are_found_by_name_everywhere_an_id_is_taken() {
    let env = Env::new();
    env.claw(&["cron", "add", "disk", "@hourly", "echo disk-usage-ok"])
        .expect_code(0);
    let both = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{exe} cron run disk && {exe} cron logs disk -n 1 && {exe} cron logs disk --limit 1",
            exe = env!("CARGO_BIN_EXE_claw")
        ))
        .env("CLAW_HOME", &env.home)
        .env("CLAW_ROOT", &env.root)
        .output()
        .expect("sh");
    let out = String::from_utf8_lossy(&both.stdout);
    assert!(
        both.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&both.stderr)
    );
    assert!(out.matches("disk-usage-ok").count() >= 2, "{out}");
    env.claw(&["cron", "next", "disk", "-n", "1"])
        .expect_code(0);
    env.claw(&["cron", "disable", "disk"]).expect_code(0);
    env.claw(&["cron", "enable", "disk"]).expect_code(0);
    env.claw(&["cron", "add", "dup", "@daily", "true"])
        .expect_code(0);
    env.claw(&["cron", "add", "dup", "@daily", "true"])
        .expect_code(0);
    let amb = env.claw(&["cron", "run", "dup"]);
    amb.expect_code(1);
    assert!(
        amb.stderr.contains("`dup` matches 2 jobs"),
        "{}",
        amb.stderr
    );
    env.claw(&["cron", "remove", "disk"]).expect_code(0);
    let gone = env.claw(&["cron", "run", "disk"]);
    gone.expect_code(1);
    assert!(
        gone.stderr.contains("no job matches `disk`"),
        "{}",
        gone.stderr
    );
}

/// What a job will start is checked when it is added, not when it first fires: an unknown
/// workflow (with "did you mean"), an argument the workflow does not take, a missing skill, a job
/// type this claw cannot run. Nothing is saved.
#[test]
fn add_checks_the_jobs_target_and_arguments() {
    let env = Env::new();
    env.workflow(
        "hello",
        "params:\n  who: {type: string, default: x}\nsteps:\n  - name: a\n    command: echo hi\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["cron", "add", "a", "@hourly", "helo", "--type", "workflow"],
            "did you mean `hello`?",
        ),
        (
            &[
                "cron", "add", "b", "@hourly", "hello", "--type", "workflow", "--arg", "whoo=x",
            ],
            "has no param `whoo` (it takes: who); did you mean `who`?",
        ),
        (
            &[
                "cron",
                "add",
                "c",
                "@hourly",
                "nosuchskill",
                "--type",
                "skill",
            ],
            "nosuchskill",
        ),
    ];
    for (args, needle) in cases {
        let ran = env.claw(args);
        ran.expect_code(2);
        assert!(ran.stderr.contains(needle), "{args:?}: {}", ran.stderr);
    }
    assert!(
        !env.home.join("cron/jobs.json").exists()
            || read(&env.home.join("cron/jobs.json")).trim() == "[]"
    );
    env.claw(&[
        "cron", "add", "ok", "@hourly", "hello", "--type", "workflow", "--arg", "who=y",
    ])
    .expect_code(0);
}

/// The seed's schedule parser (seed-reference §1.2), as its `cron enable` and daemon apply it to
/// every enabled job of jobs.json: anything else raises "Unrecognised schedule expression".
const SEED_PARSER: &str = r#"
import json, re, sys
def parse(expr):
    s = expr.strip().lower()
    if re.fullmatch(r"every\s+(\d+)\s*([mhd])", s): return
    m = re.fullmatch(r"(?:daily at\s+)?(\d{1,2}):(\d{2})", s)
    if m: return
    f = s.split()
    if len(f) == 5 and all(re.fullmatch(r"[\d*/,\-]+", x) for x in f): return
    raise ValueError(f"Unrecognised schedule expression: {expr!r}")
for job in json.load(open(sys.argv[1])):
    if job["enabled"]:
        parse(job["schedule"])
        print("seed runs", job["name"], job["schedule"])
    else:
        print("seed skips", job["name"])
"#;

#[test]
fn jobs_json_stays_readable_by_the_seed_whatever_schedule_claw_takes() {
    let env = Env::new();
    let schedules = [
        ("plain", "*/15 * * * *"),
        ("compound", "every 2h30m"),
        ("seconds", "every 90s"),
        ("named-day", "0 9 * * MON-FRI"),
        ("macro", "@daily"),
        ("with-seconds", "0 */5 * * * *"),
        ("last-day", "0 0 L * *"),
        ("clock", "daily at 7:30"),
    ];
    for (name, schedule) in schedules {
        env.claw(&["cron", "add", name, schedule, "true"])
            .expect_code(0);
    }
    let jobs = env.home.join("cron/jobs.json");
    let out = std::process::Command::new("python3")
        .args(["-c", SEED_PARSER])
        .arg(&jobs)
        .output()
        .expect("python3");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{printed}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Where the seed has the same schedule, it runs it; where it has none, it skips the job.
    for runs in ["plain", "compound", "macro", "with-seconds", "clock"] {
        assert!(printed.contains(&format!("seed runs {runs} ")), "{printed}");
    }
    for skips in ["seconds", "named-day", "last-day"] {
        assert!(
            printed.contains(&format!("seed skips {skips}")),
            "{printed}"
        );
    }
    assert!(
        printed.contains("seed runs compound every 150m"),
        "{printed}"
    );
    // claw runs every one of them, and keeps the mode the seed gave the file.
    let listed = env.claw(&["cron", "list"]).expect_code(0).stdout.clone();
    assert_eq!(listed.matches(" yes").count(), schedules.len(), "{listed}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&jobs).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Disabling and enabling again keeps the seed out of a job it cannot read.
    env.claw(&["cron", "disable", "seconds"]).expect_code(0);
    env.claw(&["cron", "enable", "seconds"]).expect_code(0);
    let text = read(&jobs);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let job = v
        .as_array()
        .expect("list")
        .iter()
        .find(|j| j["name"] == "seconds")
        .expect("job");
    assert_eq!(
        (job["enabled"].clone(), job["claw_enabled"].clone()),
        (false.into(), true.into())
    );
}
