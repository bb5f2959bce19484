//! The dashboard on `claw serve`'s listener, over real HTTP: the 503 without users, users and
//! weak passwords, login and sessions, CSRF and Origin refusals, the login throttle, API tokens,
//! hostile content rendered as text, a canary secret that never leaves, paths that cannot leave
//! the catalogue, and a running step's log over SSE.

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const PASSWORD: &str = "tulip-orbit-canyon-7";

struct Dash {
    child: Child,
    addr: String,
}

impl Drop for Dash {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `claw dashboard user add NAME` with the password on stdin.
fn add_user(env: &Env, name: &str, password: &str) -> Ran {
    let mut c = env
        .command(&["dashboard", "user", "add", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    c.wait_with_output().unwrap().into()
}

fn start(env: &Env) -> Dash {
    start_with(env, &["dashboard"])
}

/// `claw ARGS --bind ADDR` on a free port, once `/healthz` answers.
fn start_with(env: &Env, args: &[&str]) -> Dash {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = args.to_vec();
    args.extend(["--bind", &addr]);
    let child = env
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Dash { child, addr };
    let up = wait_for(Duration::from_secs(60), || {
        TcpStream::connect(&d.addr)
            .ok()
            .and_then(|_| (get(&d, "/healthz", "").status == 200).then_some(()))
    });
    assert!(up.is_some(), "the dashboard did not start");
    d
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn request(d: &Dash, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    exchange(&mut s, d, method, path, headers, body)
}

/// One request on a connection (plain or TLS), read until the server closes it.
fn exchange(
    s: &mut (impl std::io::Read + std::io::Write),
    d: &Dash,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        d.addr,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Answer {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not HTTP: {out:?}")),
        head: head.to_lowercase(),
        body: body.to_owned(),
    }
}

fn get(d: &Dash, path: &str, cookie: &str) -> Answer {
    if cookie.is_empty() {
        request(d, "GET", path, &[], "")
    } else {
        request(d, "GET", path, &[("Cookie", cookie)], "")
    }
}

/// A form POST from this origin (or `origin`).
fn post(d: &Dash, path: &str, cookie: &str, origin: Option<&str>, form: &str) -> Answer {
    let own = format!("http://{}", d.addr);
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if !cookie.is_empty() {
        h.push(("Cookie", cookie));
    }
    let origin = origin.unwrap_or(&own);
    if !origin.is_empty() {
        h.push(("Origin", origin));
    }
    request(d, "POST", path, &h, form)
}

/// Logs in; the `Cookie` header value.
fn login(d: &Dash, user: &str, password: &str) -> String {
    let a = post(
        d,
        "/login",
        "",
        None,
        &format!("user={user}&password={password}"),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let line = a
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .expect("a cookie")
        .to_owned();
    assert!(
        line.contains("httponly") && line.contains("samesite=strict"),
        "{line}"
    );
    line.trim_start_matches("set-cookie:")
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_owned()
}

fn run_count(env: &Env) -> usize {
    env.claw(&["run", "list", "--json"])
        .json()
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn without_a_user_every_page_answers_503_with_the_command_that_fixes_it() {
    let env = Env::new();
    let d = start(&env);
    for path in ["/", "/login", "/runs", "/api/v1/runs"] {
        let a = get(&d, path, "");
        assert_eq!(a.status, 503, "{path}");
        assert!(
            a.body.contains("claw dashboard user add NAME"),
            "{}",
            a.body
        );
    }
    assert_eq!(get(&d, "/healthz", "").status, 200);
}

#[test]
fn serve_no_dashboard_leaves_the_pages_and_api_out() {
    let env = Env::new();
    add_user(&env, "dan", PASSWORD).expect_code(0);
    let d = start_with(&env, &["serve", "--no-dashboard"]);
    for path in ["/", "/login", "/runs", "/api/v1/runs", "/metrics"] {
        assert_eq!(get(&d, path, "").status, 404, "{path}");
    }
    assert_eq!(get(&d, "/healthz", "").status, 200);
    drop(d);
    // The same data directory with the dashboard: the pages are there.
    let d = start_with(&env, &["serve"]);
    assert_eq!(get(&d, "/login", "").status, 200);
}

#[test]
fn weak_passwords_are_refused_and_users_are_listed_without_hashes() {
    let env = Env::new();
    let weak = add_user(&env, "alice", "password1234");
    weak.expect_code(2);
    assert!(weak.stderr.contains("common"), "{}", weak.stderr);
    add_user(&env, "alice", "short").expect_code(2);
    add_user(&env, "alice", PASSWORD).expect_code(0);
    add_user(&env, "alice", PASSWORD).expect_code(2);
    let list = env.claw(&["dashboard", "user", "list", "--json"]);
    list.expect_code(0);
    assert_eq!(list.json()[0]["name"], "alice");
    assert!(!list.stdout.contains("argon2"), "{}", list.stdout);
    let audit = env.claw(&["audit", "search", "dashboard.user.add"]);
    assert!(audit.stdout.contains("alice"), "{}", audit.stdout);
}

#[test]
fn a_session_starts_runs_only_with_its_csrf_token_from_this_origin() {
    let env = Env::new();
    env.workflow(
        "hello",
        "name: hello\nparams:\n  who: {type: string, default: x}\nsteps:\n  - name: greet\n    command: echo hi ${{ params.who }}\n",
    );
    add_user(&env, "alice", PASSWORD).expect_code(0);
    let d = start(&env);
    // No session: the login page.
    let anon = get(&d, "/runs", "");
    assert_eq!(anon.status, 303);
    assert!(anon.head.contains("location: /login"), "{}", anon.head);
    assert_eq!(get(&d, "/api/v1/runs", "").status, 401);
    // A wrong password.
    let wrong = post(&d, "/login", "", None, "user=alice&password=nope-nope-nope");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong user name or password"));
    // A login form posted from another origin.
    let cross = post(
        &d,
        "/login",
        "",
        Some("http://evil.example"),
        &format!("user=alice&password={PASSWORD}"),
    );
    assert_eq!(cross.status, 403);

    let cookie = login(&d, "alice", PASSWORD);
    let page = get(&d, "/workflows/hello", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);

    let before = run_count(&env);
    let no_token = post(&d, "/workflows/hello/run", &cookie, None, "param.who=a");
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let bad_token = post(
        &d,
        "/workflows/hello/run",
        &cookie,
        None,
        &format!("csrf={}&param.who=a", "0".repeat(64)),
    );
    assert_eq!(bad_token.status, 403);
    let other = post(
        &d,
        "/workflows/hello/run",
        &cookie,
        Some("http://evil.example"),
        &format!("csrf={csrf}&param.who=a"),
    );
    assert_eq!(other.status, 403);
    let none = post(
        &d,
        "/workflows/hello/run",
        &cookie,
        Some(""),
        &format!("csrf={csrf}&param.who=a"),
    );
    assert_eq!(none.status, 403, "no Origin nor Referer");
    assert_eq!(run_count(&env), before, "a refused request changed nothing");

    let ok = post(
        &d,
        "/workflows/hello/run",
        &cookie,
        None,
        &format!("csrf={csrf}&param.who=world"),
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(run_count(&env), before + 1);
    let run = ok
        .head
        .lines()
        .find_map(|l| l.strip_prefix("location: /runs/"))
        .expect("the run's page")
        .trim()
        .to_owned();
    let done = wait_for(Duration::from_secs(60), || {
        let a = get(&d, &format!("/api/v1/runs/{run}"), &cookie);
        let v: serde_json::Value = serde_json::from_str(&a.body).ok()?;
        (v["status"] == "succeeded").then_some(v)
    })
    .expect("the run succeeds");
    assert_eq!(done["params"]["who"], "world");
    assert!(
        done["steps"][0]["stdout_tail"]
            .as_str()
            .unwrap()
            .contains("hi world")
    );

    let audit = env.claw(&["audit", "search", "dashboard"]).stdout;
    for needle in [
        "dashboard.login",
        "dashboard.refused",
        "dashboard.run.start",
        "dashboard:alice",
    ] {
        assert!(audit.contains(needle), "{needle} not audited:\n{audit}");
    }

    // Logging out ends the session on the server: the old cookie opens nothing.
    let out = post(&d, "/logout", &cookie, None, &format!("csrf={csrf}"));
    assert_eq!(out.status, 303);
    assert_eq!(get(&d, "/runs", &cookie).status, 303);

    // A password change ends every session of the user.
    let cookie = login(&d, "alice", PASSWORD);
    assert_eq!(get(&d, "/runs", &cookie).status, 200);
    let mut c = env
        .command(&["dashboard", "user", "passwd", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"maple-quartz-harbor-42\n")
        .unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(get(&d, "/runs", &cookie).status, 303);
}

#[test]
fn the_sixth_wrong_password_in_a_minute_is_throttled() {
    let env = Env::new();
    add_user(&env, "bob", PASSWORD).expect_code(0);
    let d = start(&env);
    for _ in 0..5 {
        assert_eq!(
            post(
                &d,
                "/login",
                "",
                None,
                "user=bob&password=wrong-wrong-wrong"
            )
            .status,
            401
        );
    }
    // Even the right password is not checked now.
    let sixth = post(
        &d,
        "/login",
        "",
        None,
        &format!("user=bob&password={PASSWORD}"),
    );
    assert_eq!(sixth.status, 429);
    assert!(sixth.head.contains("retry-after: 60"));
    let audit = env.claw(&["audit", "search", "throttled"]).stdout;
    assert!(audit.contains("dashboard:bob"), "{audit}");
}

#[test]
fn hostile_content_is_text_and_a_canary_secret_never_leaves() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    let canary = "canary-5f1d9a7c3e";
    let mut c = env
        .command(&["vault", "set", "CANARY"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(canary.as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
    env.workflow(
        "evil",
        r#"name: evil
description: "<script>alert('d')</script>"
params:
  p: {type: string, default: "\"><img src=x onerror=alert(1)>"}
steps:
  - name: "say"
    env: {C: "${{ secrets.CANARY }}"}
    command: echo "<script>alert(2)</script> javascript:alert(3) $C"; sleep 0.3; echo second line
  - name: gate
    needs: [say]
    type: approval
    message: "<script>alert(4)</script>"
    input:
      ticket: {type: string, required: true}
"#,
    );
    add_user(&env, "alice", PASSWORD).expect_code(0);
    env.claw(&["dashboard", "token", "add", "alice", "ci"])
        .expect_code(0);
    let d = start(&env);
    let cookie = login(&d, "alice", PASSWORD);
    let page = get(&d, "/workflows/evil", &cookie);
    let csrf = csrf_of(&page.body);
    let started = post(
        &d,
        "/workflows/evil/run",
        &cookie,
        None,
        &format!("csrf={csrf}"),
    );
    assert_eq!(started.status, 303, "{}", started.body);
    let run = started
        .head
        .lines()
        .find_map(|l| l.strip_prefix("location: /runs/"))
        .unwrap()
        .trim()
        .to_owned();
    wait_for(Duration::from_secs(60), || {
        let a = get(&d, &format!("/api/v1/runs/{run}"), &cookie);
        a.body.contains("\"waiting\"").then_some(())
    })
    .expect("the gate waits");

    let mut seen = String::new();
    for path in [
        "/".to_owned(),
        "/workflows".to_owned(),
        "/workflows/evil".to_owned(),
        "/runs".to_owned(),
        format!("/runs/{run}"),
        "/approvals".to_owned(),
        "/audit".to_owned(),
        "/vault".to_owned(),
        "/skills".to_owned(),
        "/hosts".to_owned(),
        "/outbox".to_owned(),
        "/api/v1/skills".to_owned(),
        "/api/v1/hosts".to_owned(),
        format!("/api/v1/runs/{run}"),
        "/api/v1/runs".to_owned(),
        "/api/v1/approvals".to_owned(),
        "/api/v1/vault".to_owned(),
    ] {
        let a = get(&d, &path, &cookie);
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert!(!a.body.contains(canary), "the canary reached {path}");
        if !path.starts_with("/api/") {
            for raw in ["<script>alert", "<img src=x", "\"><img"] {
                assert!(!a.body.contains(raw), "{raw} unescaped on {path}");
            }
            assert!(
                a.head
                    .contains("content-security-policy: default-src 'none'; script-src 'self'")
            );
        }
        seen.push_str(&a.body);
    }
    assert!(
        seen.contains("&#60;script&#62;alert(4)"),
        "the gate's message is shown as text"
    );
    assert!(seen.contains("CANARY"), "the vault page names the key");
    // The API with the token: the same data.
    let token = env.claw(&["dashboard", "token", "list", "--json"]).json();
    assert_eq!(token[0]["name"], "ci");

    // Decide through the form with the gate's input.
    let decided = post(
        &d,
        &format!("/runs/{run}/decide"),
        &cookie,
        None,
        &format!("csrf={csrf}&step=gate&decision=approve&input.ticket=T-9"),
    );
    assert_eq!(decided.status, 303, "{}", decided.body);
    let v = wait_for(Duration::from_secs(60), || {
        let a = get(&d, &format!("/api/v1/runs/{run}"), &cookie);
        let v: serde_json::Value = serde_json::from_str(&a.body).ok()?;
        (v["status"] == "succeeded").then_some(v)
    })
    .expect("approved, the run succeeds");
    assert!(!v.to_string().contains(canary));
}

#[test]
fn api_tokens_are_hashed_at_rest_and_paths_stay_in_the_catalogue() {
    let env = Env::new();
    env.workflow("ok", "name: ok\nsteps:\n  - name: a\n    command: echo a\n");
    add_user(&env, "carol", PASSWORD).expect_code(0);
    let made = env.claw(&["dashboard", "token", "add", "carol", "ci"]);
    made.expect_code(0);
    let token = made.stdout.trim().to_owned();
    assert_eq!(token.len(), 64);
    let db = std::fs::read(env.home.join("claw.db")).unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is stored in clear"
    );
    let d = start(&env);
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let a = request(&d, "GET", "/api/v1/workflows", &auth, "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("\"ok\""));
    let wrong = request(
        &d,
        "GET",
        "/api/v1/workflows",
        &[("Authorization", "Bearer 00")],
        "",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.head.contains("www-authenticate: bearer"));
    for path in [
        "/api/v1/workflows/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/workflows/%2Fetc%2Fpasswd",
        "/api/v1/workflows/..",
        "/api/v1/runs/..%2Fclaw.db",
    ] {
        let a = request(&d, "GET", path, &auth, "");
        assert_eq!(a.status, 404, "{path}: {}", a.body);
        assert!(!a.body.contains("root:"), "{path}");
    }
    // A token needs no CSRF token (no cookie to ride on): starting a run works.
    let started = request(
        &d,
        "POST",
        "/api/v1/workflows/ok/run",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(started.status, 201, "{}", started.body);
    let m = request(&d, "GET", "/metrics", &auth, "");
    assert!(m.body.contains("# TYPE claw_runs gauge"), "{}", m.body);
    let spec = get(&d, "/api/v1/openapi.json", "");
    assert_eq!(spec.status, 200);
    assert!(spec.body.contains("\"openapi\""));
    env.claw(&["dashboard", "token", "remove", "carol", "ci"])
        .expect_code(0);
    assert_eq!(
        request(&d, "GET", "/api/v1/workflows", &auth, "").status,
        401
    );
}

#[test]
fn a_running_steps_log_arrives_over_sse() {
    let env = Env::new();
    env.workflow(
        "slow",
        "name: slow\nsteps:\n  - name: talk\n    command: for i in 1 2 3; do echo line-$i; sleep 0.4; done\n",
    );
    add_user(&env, "dan", PASSWORD).expect_code(0);
    let d = start(&env);
    let cookie = login(&d, "dan", PASSWORD);
    let csrf = csrf_of(&get(&d, "/workflows/slow", &cookie).body);
    let started = post(
        &d,
        "/workflows/slow/run",
        &cookie,
        None,
        &format!("csrf={csrf}"),
    );
    let run = started
        .head
        .lines()
        .find_map(|l| l.strip_prefix("location: /runs/"))
        .unwrap()
        .trim()
        .to_owned();
    let stream = wait_for(Duration::from_secs(30), || {
        let a = get(&d, &format!("/runs/{run}"), &cookie);
        a.body.contains("data-stream=").then_some(())
    });
    assert!(
        stream.is_some(),
        "the page offers the live log while the step runs"
    );
    let t0 = Instant::now();
    let a = get(&d, &format!("/runs/{run}/steps/talk/stream"), &cookie);
    assert_eq!(a.status, 200);
    assert!(a.head.contains("text/event-stream"), "{}", a.head);
    for i in 1..=3 {
        assert!(a.body.contains(&format!("data: line-{i}")), "{}", a.body);
    }
    assert!(a.body.contains("event: end"), "{}", a.body);
    assert!(t0.elapsed() < Duration::from_secs(20));
}

/// On PostgreSQL, the live log of a step a worker runs on another machine (another data
/// directory here, out of the dashboard's reach) comes from the copy in the store.
#[test]
fn a_step_running_on_another_machine_streams_its_log_from_the_store() {
    let here = Env::on_postgres();
    let there = Env::new();
    let url = here.store_url().unwrap().to_owned();
    // Only the worker has the label: the dashboard's daemon leaves the run to it.
    let wf = "name: far\nruns_on: [far]\nsteps:\n  - name: talk\n    command: for i in 1 2 3 4; do echo line-$i; sleep 0.5; done\n";
    here.workflow("far", wf);
    there.workflow("far", wf);
    add_user(&here, "erin", PASSWORD).expect_code(0);
    let d = start(&here);
    let cookie = login(&d, "erin", PASSWORD);
    let run = here
        .claw(&["workflow", "run", "far", "--detach"])
        .expect_code(0)
        .stdout
        .trim()
        .to_owned();
    let mut worker = there
        .command(&[
            "worker", "--labels", "far", "--lease", "3s", "--grace", "2s",
        ])
        .env("CLAW_STORE_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = wait_for(Duration::from_secs(30), || {
        let a = get(&d, &format!("/runs/{run}"), &cookie);
        a.body.contains("data-stream=").then_some(())
    });
    let a = get(&d, &format!("/runs/{run}/steps/talk/stream"), &cookie);
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(
        running.is_some(),
        "the page offers the live log while the step runs"
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.head.contains("text/event-stream"), "{}", a.head);
    for i in 1..=4 {
        assert!(a.body.contains(&format!("data: line-{i}")), "{}", a.body);
    }
    assert!(a.body.contains("event: end"), "{}", a.body);
    assert!(
        !here.home.join("logs").join("runs").join(&run).exists(),
        "the step ran elsewhere"
    );
}

/// A GET with an API token, as JSON.
fn api_json(d: &Dash, token: &str, path: &str) -> serde_json::Value {
    let bearer = format!("Bearer {token}");
    let a = request(d, "GET", path, &[("Authorization", bearer.as_str())], "");
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", a.body))
}

#[test]
fn cron_watchers_and_webhooks_have_their_pages_actions_and_metrics() {
    let env = Env::new();
    let inbox = env.path("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    env.workflow(
        "on-file",
        "name: on-file\nsteps:\n  - name: a\n    command: echo got it\n",
    );
    env.workflow(
        "hooked",
        "name: hooked\nsteps:\n  - name: s\n    command: echo hooked\ntriggers:\n  - webhook: {name: deploy, verify: bearer, secret: letmein-please-42}\n",
    );
    env.workflow(
        "nightly",
        "name: nightly\nschedule: \"0 3 * * *\"\nsteps:\n  - name: s\n    command: 'true'\n",
    );
    std::fs::write(
        env.root.join("watchers.yaml"),
        format!(
            "- name: inbox-rule\n  path: {}\n  action: workflow\n  command: on-file\n  debounce: 100ms\n",
            inbox.display()
        ),
    )
    .unwrap();
    env.claw(&["cron", "add", "backup", "0 4 * * *", "echo backup-done"])
        .expect_code(0);
    add_user(&env, "alice", PASSWORD).expect_code(0);
    let token = env
        .claw(&["dashboard", "token", "add", "alice", "ci"])
        .stdout
        .trim()
        .to_owned();
    let d = start(&env);
    let cookie = login(&d, "alice", PASSWORD);

    // Cron: the job, the workflow's schedule, their next fires.
    let page = get(&d, "/cron", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("backup") && page.body.contains("nightly"));
    let cron = api_json(&d, &token, "/api/v1/cron");
    let job = &cron["jobs"][0];
    assert_eq!(job["name"], "backup");
    assert_eq!(job["enabled"], true);
    assert!(job["next_fire"].is_string(), "{cron}");
    let wf = cron["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["workflow"] == "nightly")
        .unwrap_or_else(|| panic!("the workflow's schedule: {cron}"));
    assert_eq!(wf["expr"], "0 3 * * *");
    assert!(wf["next_fire"].is_string());
    let id = job["id"].as_str().unwrap().to_owned();
    let enabled = |env: &Env| env.claw(&["cron", "list", "--json"]).json()[0]["enabled"].clone();

    // Disabling needs the session's CSRF token; then it is done and audited.
    let refused = post(&d, &format!("/cron/{id}/disable"), &cookie, None, "");
    assert_eq!(refused.status, 403);
    assert_eq!(enabled(&env), true, "a refused request changed nothing");
    let csrf = csrf_of(&page.body);
    let done = post(
        &d,
        &format!("/cron/{id}/disable"),
        &cookie,
        None,
        &format!("csrf={csrf}"),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(enabled(&env), false);
    let cron = api_json(&d, &token, "/api/v1/cron");
    assert_eq!(cron["jobs"][0]["enabled"], false);
    assert!(cron["jobs"][0]["next_fire"].is_null());
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let again = request(&d, "POST", &format!("/api/v1/cron/{id}/enable"), &auth, "");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(enabled(&env), true);
    assert_eq!(
        request(&d, "POST", "/api/v1/cron/no-such-job/enable", &auth, "").status,
        404
    );

    // Run now: answered at once, the job's output and status recorded when it ends.
    let ran = request(&d, "POST", &format!("/api/v1/cron/{id}/run"), &auth, "");
    assert_eq!(ran.status, 202, "{}", ran.body);
    let status = wait_for(Duration::from_secs(60), || {
        let v = api_json(&d, &token, "/api/v1/cron");
        v["jobs"][0]["last_status"].as_str().map(str::to_owned)
    })
    .expect("the job ran");
    assert_eq!(status, "ok");
    let logs = env.claw(&["cron", "logs", "backup"]).stdout;
    assert!(logs.contains("backup-done"), "{logs}");
    let audit = env.claw(&["audit", "search", "dashboard:alice"]).stdout;
    for action in ["cron.disable", "cron.enable", "cron.run"] {
        assert!(audit.contains(action), "{action} not audited:\n{audit}");
    }

    // Watchers: the rule, and the run it started for a new file.
    let watchers = api_json(&d, &token, "/api/v1/watchers");
    assert_eq!(watchers["rules"][0]["name"], "inbox-rule", "{watchers}");
    std::fs::write(inbox.join("report.txt"), "x").unwrap();
    let started = wait_for(Duration::from_secs(60), || {
        let v = api_json(&d, &token, "/api/v1/watchers");
        let r = v["runs"].get(0)?.clone();
        (r["status"] == "succeeded").then_some(r)
    })
    .expect("the watcher started a run");
    assert_eq!(started["source"], "inbox-rule");
    assert_eq!(started["workflow"], "on-file");
    assert!(started["path"].as_str().unwrap().ends_with("report.txt"));
    let page = get(&d, "/watchers", &cookie);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("inbox-rule") && page.body.contains("report.txt"));

    // Webhooks: the hook (where its secret is, never the secret) and the delivery's run.
    let hook = request(
        &d,
        "POST",
        "/hooks/deploy",
        &[
            ("Authorization", "Bearer letmein-please-42"),
            ("Content-Type", "application/json"),
            ("X-Request-Id", "delivery-77"),
        ],
        "{}",
    );
    assert!(hook.status < 300, "{}: {}", hook.status, hook.body);
    let hooks = wait_for(Duration::from_secs(60), || {
        let v = api_json(&d, &token, "/api/v1/webhooks");
        (v["deliveries"].get(0)?["status"] == "succeeded").then_some(v)
    })
    .expect("the delivery's run succeeds");
    assert_eq!(hooks["hooks"][0]["name"], "deploy");
    assert_eq!(hooks["hooks"][0]["verify"], "bearer");
    assert_eq!(hooks["deliveries"][0]["source"], "deploy");
    assert_eq!(hooks["deliveries"][0]["delivery"], "request:delivery-77");
    let page = get(&d, "/webhooks", &cookie);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("delivery-77"));
    for body in [&page.body, &hooks.to_string()] {
        assert!(
            !body.contains("letmein-please-42"),
            "the hook's secret left"
        );
    }

    // Metrics: step durations, fires per schedule, runs per trigger, deliveries per hook, the
    // outbox's messages.
    env.claw(&[
        "msg",
        "send",
        "webhook",
        "http://127.0.0.1:9/nobody",
        "queued for the metrics",
        "--queue",
    ])
    .expect_code(0);
    let m = request(&d, "GET", "/metrics", &auth, "").body;
    for needle in [
        "# TYPE claw_step_duration_seconds histogram",
        "claw_step_duration_seconds_bucket{le=\"+Inf\"} ",
        "claw_schedule_fires_total{schedule=\"job:",
        "outcome=\"missed\"} 0",
        "claw_runs_started_total{trigger=\"watcher\"} 1",
        "claw_runs_started_total{trigger=\"webhook\"} 1",
        "claw_webhook_deliveries_total{hook=\"deploy\"} 1",
        "# TYPE claw_messages gauge",
        "claw_messages{channel=\"webhook\",status=\"",
    ] {
        assert!(m.contains(needle), "{needle} not in the metrics:\n{m}");
    }
    let count: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("claw_step_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(count >= 2, "{m}");
}

/// A rustls client that trusts only `cert` (DER).
fn tls_client(cert: &[u8]) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.to_vec().into()).unwrap();
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

fn tls_request(
    d: &Dash,
    client: &std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Answer> {
    let sock = TcpStream::connect(&d.addr).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // The handshake first: a certificate the client does not trust ends here.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).ok()?;
    }
    Some(exchange(&mut tls, d, method, path, headers, body))
}

/// Starts `claw dashboard` with `vars` set; waits for it to end (or kills it after 30 s).
fn dashboard_exit(env: &Env, vars: &[(&str, &std::path::Path)]) -> Ran {
    let mut c = env.command(&["dashboard", "--bind", &format!("127.0.0.1:{}", free_port())]);
    for (k, v) in vars {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the daemon did not refuse its TLS settings");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap().into()
}

#[test]
fn over_tls_from_certificate_files_with_secure_host_cookies() {
    let env = Env::new();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = env.path("tls/cert.pem");
    let key = env.path("tls/key.pem");
    std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    add_user(&env, "tess", PASSWORD).expect_code(0);

    // One setting without the other, or a file that is no certificate: refused before listening.
    let half = dashboard_exit(&env, &[("DASHBOARD_TLS_CERT", &cert)]);
    half.expect_code(2);
    assert!(half.stderr.contains("DASHBOARD_TLS_KEY"), "{}", half.stderr);
    let junk = env.path("tls/junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let bad = dashboard_exit(
        &env,
        &[("DASHBOARD_TLS_CERT", &junk), ("DASHBOARD_TLS_KEY", &key)],
    );
    bad.expect_code(2);
    assert!(bad.stderr.contains("junk.pem"), "{}", bad.stderr);

    let addr = format!("127.0.0.1:{}", free_port());
    let child = env
        .command(&["dashboard", "--bind", &addr])
        .env("DASHBOARD_TLS_CERT", &cert)
        .env("DASHBOARD_TLS_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Dash { child, addr };
    let client = tls_client(made.cert.der());
    let up = wait_for(Duration::from_secs(60), || {
        tls_request(&d, &client, "GET", "/healthz", &[], "").filter(|a| a.status == 200)
    });
    assert!(up.is_some(), "the daemon does not answer over TLS");

    // Plain HTTP on the TLS port gets no answer.
    let mut plain = TcpStream::connect(&d.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/1.1 200"), "plain HTTP was served");

    // A client that does not trust the certificate does not get through.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    assert!(
        tls_request(
            &d,
            &tls_client(other.cert.der()),
            "GET",
            "/healthz",
            &[],
            ""
        )
        .is_none_or(|a| a.status != 200)
    );

    // Logging in over TLS: the cookie is `__Host-` prefixed and `Secure`, and opens pages.
    let origin = format!("https://{}", d.addr);
    let a = tls_request(
        &d,
        &client,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", origin.as_str()),
        ],
        &format!("user=tess&password={PASSWORD}"),
    )
    .unwrap();
    assert_eq!(a.status, 303, "{}", a.body);
    let line = a
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .expect("a cookie")
        .to_owned();
    assert!(line.contains("set-cookie: __host-claw_session="), "{line}");
    assert!(line.contains("; secure"), "{line}");
    assert!(
        line.contains("path=/") && line.contains("httponly"),
        "{line}"
    );
    let cookie = line
        .trim_start_matches("set-cookie:")
        .trim()
        .split(';')
        .next()
        .unwrap()
        .replace("__host-claw_session", "__Host-claw_session");
    let runs = tls_request(
        &d,
        &client,
        "GET",
        "/runs",
        &[("Cookie", cookie.as_str())],
        "",
    )
    .unwrap();
    assert_eq!(runs.status, 200, "{}", runs.body);
    // The plain-HTTP cookie name opens nothing here.
    let plain_name = cookie.replace("__Host-claw_session", "claw_session");
    let refused = tls_request(
        &d,
        &client,
        "GET",
        "/runs",
        &[("Cookie", plain_name.as_str())],
        "",
    )
    .unwrap();
    assert_eq!(refused.status, 303);
}

#[test]
fn the_memory_page_lists_and_searches_without_creating_the_database() {
    let env = Env::new();
    add_user(&env, "mo", PASSWORD).expect_code(0);
    let token = env
        .claw(&["dashboard", "token", "add", "mo", "ci"])
        .stdout
        .trim()
        .to_owned();
    let d = start(&env);
    let empty = api_json(&d, &token, "/api/v1/memory");
    assert_eq!(empty["exists"], false, "{empty}");
    assert!(
        !env.home.join("memory.db").exists(),
        "reading created memory.db"
    );
    env.claw(&[
        "memory", "remember", "nas-ip", "10.0.0.5", "--tags", "network",
    ])
    .expect_code(0);
    env.claw(&[
        "memory",
        "remember",
        "evil",
        "<script>alert(1)</script>",
        "--category",
        "preference",
    ])
    .expect_code(0);
    let all = api_json(&d, &token, "/api/v1/memory");
    assert_eq!(all["stats"]["total"], 2, "{all}");
    assert_eq!(all["memories"].as_array().unwrap().len(), 2);
    let found = api_json(&d, &token, "/api/v1/memory?q=netw");
    assert_eq!(found["memories"][0]["key"], "nas-ip", "{found}");
    assert_eq!(found["memories"].as_array().unwrap().len(), 1);
    let prefs = api_json(&d, &token, "/api/v1/memory?category=preference");
    assert_eq!(prefs["memories"][0]["key"], "evil", "{prefs}");
    let bearer = format!("Bearer {token}");
    let bad = request(
        &d,
        "GET",
        "/api/v1/memory?limit=lots",
        &[("Authorization", bearer.as_str())],
        "",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let cookie = login(&d, "mo", PASSWORD);
    let page = get(&d, "/memory?q=10.0", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("nas-ip"), "{}", page.body);
    let page = get(&d, "/memory", &cookie);
    assert!(!page.body.contains("<script>alert"), "unescaped");
    assert!(
        page.body.contains("&#60;script&#62;alert(1)"),
        "{}",
        page.body
    );
}

/// A finished run with one `llm` step whose outputs say what it used, written through the
/// store as the engine writes them.
fn llm_run(env: &Env, id: &str, created: i64, provider: &str, tokens: (u64, u64)) {
    use claw::store::{Phase, RunRecord, RunStatus, SqliteStore, StepRecord, StepStatus, Store};
    let store = SqliteStore::open(&env.home.join("claw.db")).unwrap();
    store
        .create_run(&RunRecord {
            workflow_path: "ask.yaml".into(),
            definition: "steps: []".into(),
            trigger: serde_json::json!({"type": "manual"}),
            ..RunRecord::queued(id, "ask", created)
        })
        .unwrap();
    let mut step = StepRecord::new("ask", Phase::Main, 0);
    step.status = StepStatus::Succeeded;
    step.outputs = serde_json::json!({"provider": provider, "model": "model-<b>1</b>", "text": "hi",
        "usage": {"input_tokens": tokens.0, "output_tokens": tokens.1}});
    store
        .record_steps(id, &[step], Some(RunStatus::Succeeded))
        .unwrap();
}

#[test]
fn the_llm_usage_page_counts_tokens_per_provider_and_model() {
    let env = Env::new();
    add_user(&env, "lu", PASSWORD).expect_code(0);
    let token = env
        .claw(&["dashboard", "token", "add", "lu", "ci"])
        .stdout
        .trim()
        .to_owned();
    let now = chrono::Utc::now().timestamp_millis();
    llm_run(
        &env,
        "01old",
        now - 30 * 24 * 3600 * 1000,
        "anthropic",
        (100, 50),
    );
    llm_run(&env, "01new", now, "anthropic", (11, 7));
    llm_run(&env, "01oll", now, "ollama", (5, 3));
    let d = start(&env);
    let all = api_json(&d, &token, "/api/v1/llm");
    assert_eq!(
        all["usage"],
        serde_json::json!([
            {"provider": "anthropic", "model": "model-<b>1</b>", "steps": 2, "input_tokens": 111, "output_tokens": 57},
            {"provider": "ollama", "model": "model-<b>1</b>", "steps": 1, "input_tokens": 5, "output_tokens": 3},
        ])
    );
    let recent = api_json(&d, &token, "/api/v1/llm?since=7d");
    assert_eq!(recent["usage"][0]["input_tokens"], 11, "{recent}");
    let cli = env.claw(&["llm", "usage", "--json"]).json();
    assert_eq!(
        cli[0]["input_tokens"], 111,
        "the same count as `claw llm usage`"
    );
    let bearer = format!("Bearer {token}");
    let bad = request(
        &d,
        "GET",
        "/api/v1/llm?since=whenever",
        &[("Authorization", bearer.as_str())],
        "",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let cookie = login(&d, "lu", PASSWORD);
    let page = get(&d, "/llm", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("ollama") && page.body.contains(">111<"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>1</b>"), "unescaped");
}

/// The browser end-to-end script (scripts/dashboard-e2e.cjs) against a real daemon: Debian's
/// chromium driven by playwright-core, both installed by scripts/test.sh. Screenshots go to
/// target/dashboard-e2e/.
#[test]
fn in_a_real_browser() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = manifest.join("target/playwright/node_modules");
    assert!(
        modules.join("playwright-core").exists(),
        "playwright-core is not installed under target/playwright: run scripts/test.sh"
    );
    let env = Env::new();
    env.workflow(
        "hello",
        r#"name: hello
params:
  who: {type: string, default: world}
steps:
  - name: greet
    command: for i in 1 2 3; do echo tick-$i; sleep 1; done
  - name: gate
    needs: [greet]
    type: approval
    message: "Ship ${{ params.who }}?"
    input:
      ticket: {type: string, required: true}
  - name: after
    needs: [gate]
    command: echo "after ${{ steps.gate.outputs.ticket }}"
"#,
    );
    env.workflow(
        "slow",
        "name: slow\nsteps:\n  - name: wait\n    command: sleep 60\n",
    );
    env.workflow(
        "evil",
        r#"name: evil
description: "<script>window.__pwned=4</script>"
params:
  p: {type: string, default: "\"><img src=x onerror=window.__pwned=3>"}
steps:
  - name: say
    command: echo '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> javascript:window.__pwned=5'
  - name: gate
    needs: [say]
    type: approval
    message: "<script>window.__pwned=6</script><img src=x onerror=window.__pwned=7>"
"#,
    );
    let mark = env.path("flaky-mark");
    env.workflow(
        "flaky",
        &format!(
            "name: flaky\nsteps:\n  - name: prepare\n    command: echo prepared\n  - name: check\n    needs: [prepare]\n    command: test -f {m} || {{ touch {m}; echo first time fails; exit 1; }}\n",
            m = mark.display()
        ),
    );
    env.workflow(
        "hooked",
        "name: hooked\nsteps:\n  - name: s\n    command: echo hooked\ntriggers:\n  - webhook: {name: deploy, verify: bearer, secret: \"${{ secrets.DEPLOY_HOOK }}\"}\n",
    );
    env.claw(&["cron", "add", "backup", "0 4 * * *", "echo backup-done"])
        .expect_code(0);
    add_user(&env, "alice", PASSWORD).expect_code(0);
    let token = env.claw(&["dashboard", "token", "add", "alice", "e2e"]);
    let bearer = format!("Bearer {}", token.stdout.trim());
    let d = start(&env);
    let evil = request(
        &d,
        "POST",
        "/api/v1/workflows/evil/run",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(evil.status, 201, "{}", evil.body);
    let evil: serde_json::Value = serde_json::from_str(&evil.body).unwrap();
    let shots = manifest.join("target/dashboard-e2e");
    std::fs::create_dir_all(&shots).unwrap();
    let out = std::process::Command::new("node")
        .arg(manifest.join("scripts/dashboard-e2e.cjs"))
        .env("NODE_PATH", &modules)
        .env("BASE", format!("http://{}", d.addr))
        .env("USER_NAME", "alice")
        .env("PASS", PASSWORD)
        .env("SHOTS", &shots)
        .env("EVIL_RUN", evil["id"].as_str().unwrap())
        .env("CHROMIUM", "/usr/bin/chromium")
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok - no hostile script ran"), "{stdout}");
}

/// schemathesis (installed by scripts/test.sh) against the served OpenAPI description with a
/// valid token: no 5xx, every answer as described (status, content type, schema).
#[test]
fn the_api_answers_as_its_openapi_description_says() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = manifest.join("target/schemathesis-venv/bin/st");
    assert!(
        st.exists(),
        "schemathesis is not installed: run scripts/test.sh"
    );
    let env = Env::new();
    env.workflow("ok", "name: ok\nparams:\n  n: {type: integer, default: 1}\nsteps:\n  - name: a\n    command: echo a\n");
    add_user(&env, "st", PASSWORD).expect_code(0);
    let token = env
        .claw(&["dashboard", "token", "add", "st", "st"])
        .stdout
        .trim()
        .to_owned();
    let d = start(&env);
    let base = format!("http://{}", d.addr);
    let out = std::process::Command::new(&st)
        .args([
            "run",
            &format!("{base}/api/v1/openapi.json"),
            "--base-url",
            &base,
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--hypothesis-max-examples",
            "25",
            "--hypothesis-seed",
            "1",
        ])
        .args(["--hypothesis-suppress-health-check", "all"])
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("not_a_server_error"), "{stdout}");
}
