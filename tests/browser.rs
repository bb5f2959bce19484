//! Browser steps and `claw browse` with Debian's real Chromium (scripts/test.sh installs it)
//! against pages served by an axum server in the test process. Chromium is started by claw;
//! each test runs as few claw processes as it can (one browser per process).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::common::{Env, Ran, read, step, wait_for};

const LOGIN: &str = r#"<html><head><title>Login</title></head><body>
<form method="post" action="/login"><input id="user" name="user"><input id="pass" name="pass" type="password">
<select id="lang" name="lang"><option value="en">English</option><option value="fr">Français</option></select>
<button id="go" type="submit">Sign in</button></form></body></html>"#;

const DELAYED: &str = r#"<html><body><div id="root">loading</div><script>
setTimeout(() => { const d = document.createElement('p'); d.id = 'late'; d.textContent = 'rendered late'; document.body.appendChild(d); }, 400);
</script></body></html>"#;

const TABLE: &str = r#"<html><head><title>Prices</title></head><body><table id="prices">
<thead><tr><th>Item</th><th>Price</th></tr></thead>
<tbody><tr><td>apple</td><td>1.20</td></tr><tr><td>pear</td><td>0.90</td></tr></tbody></table></body></html>"#;

fn app(table_hits: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route("/login", get(|| async { Html(LOGIN) }))
        .route(
            "/login",
            post(|body: String| async move {
                let user = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("user="))
                    .unwrap_or("")
                    .to_owned();
                let lang = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("lang="))
                    .unwrap_or("")
                    .to_owned();
                let ok = body.contains("pass=s3cr3t-pw");
                Html(format!(
                    "<html><body><h1>{}</h1><p id=lang>{lang}</p></body></html>",
                    if ok {
                        format!("Welcome {user}")
                    } else {
                        "Denied".into()
                    }
                ))
            }),
        )
        .route("/delayed", get(|| async { Html(DELAYED) }))
        .route(
            "/table",
            get(move || async move {
                table_hits.fetch_add(1, Ordering::SeqCst);
                Html(TABLE)
            }),
        )
        .route(
            "/set-cookie",
            get(|| async {
                (
                    [(
                        header::SET_COOKIE,
                        "session=kept-42; Max-Age=3600; Path=/",
                    )],
                    Html("<html><body>set</body></html>"),
                )
                    .into_response()
            }),
        )
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                let c = headers
                    .get(header::COOKIE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                Html(format!("<html><body><p id=c>{c}</p></body></html>"))
            }),
        )
        .route(
            "/alert",
            get(|| async {
                Html("<html><body><script>alert('hello from the page'); document.body.append('after');</script></body></html>")
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Response::new(axum::body::Body::empty())
            }),
        )
}

/// Serves [`app`] on 127.0.0.1:0 from its own thread; counts the loads of `/table`.
fn serve() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("address"))
                .expect("send");
            axum::serve(listener, app(h)).await.expect("serve");
        });
    });
    (
        rx.recv_timeout(Duration::from_secs(10)).expect("address"),
        hits,
    )
}

fn profile_dir(env: &Env, name: &str) -> PathBuf {
    env.home.join("browser").join("profiles").join(name)
}

/// Pids of processes started with `--user-data-dir=<dir>` (Chromium's main process).
pub(crate) fn chromium_pids(dir: &Path) -> Vec<i32> {
    let flag = format!("--user-data-dir={}", dir.display());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == flag.as_bytes()))
        })
        .collect()
}

/// Live processes (not zombies) whose process group is `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the command's closing parenthesis: state, ppid, pgrp.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.first() != Some(&"Z") && f.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().expect("width"));
    let h = u32::from_be_bytes(bytes[20..24].try_into().expect("height"));
    (w, h)
}

/// One run through one browser: a login form, late content, a table, a screenshot, eval,
/// cookies across steps, an alert, a page that never loads (then a fine step), an invalid
/// selector and a refused scheme; then a second run that still has the cookie.
#[test]
fn a_run_of_browser_steps_does_the_seeds_jobs() {
    let (addr, _) = serve();
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "SITE_PASS", "s3cr3t-pw"])
        .expect_code(0);
    let base = format!("http://{addr}");
    env.workflow(
        "site",
        &format!(
            r##"params:
  user: {{type: string}}
steps:
  - name: login
    type: browser
    url: {base}/login
    actions:
      - fill: {{selector: "#user", value: "${{{{ params.user }}}}"}}
      - fill: {{selector: "#pass", value: "${{{{ secrets.SITE_PASS }}}}"}}
      - select: {{selector: "#lang", value: Français}}
      - eval: {{script: "document.querySelector('#pass').value", as: leak}}
      - click: "#go"
      - wait_for: {{text: Welcome}}
      - extract: {{selector: h1, as: greeting}}
      - extract: {{selector: "#lang", as: lang}}
  - name: late
    type: browser
    url: {base}/delayed
    actions:
      - extract: "#late"
  - name: prices
    type: browser
    viewport: 640x480
    actions:
      - goto: {base}/table
      - table: {{selector: "#prices", as: rows}}
      - screenshot: {{file: prices.png, as: shot}}
      - eval: "() => ({{title: document.title, n: document.querySelectorAll('td').length}})"
  - name: cookie-set
    type: browser
    url: {base}/set-cookie
  - name: cookie-read
    type: browser
    url: {base}/whoami
    actions:
      - extract: "#c"
      - cookies: {{as: jar}}
  - name: dialog
    type: browser
    url: {base}/alert
    actions:
      - extract: body
  - name: hang
    type: browser
    url: {base}/hang
    timeout: 3s
    on_failure: continue
  - name: after-hang
    type: browser
    url: {base}/table
    on_failure: continue
    actions:
      - extract: {{selector: "td", all: true, as: cells}}
  - name: bad-selector
    type: browser
    url: {base}/table
    on_failure: continue
    actions:
      - click: "td[["
  - name: refused
    type: browser
    url: file:///etc/hostname
    on_failure: continue
"##
        ),
    );
    let t0 = Instant::now();
    let ran = env.claw(&["workflow", "run", "site", "--param", "user=alice", "--json"]);
    let id = ran.json()["id"].as_str().expect("run id").to_owned();
    let run = env.show(&id);
    eprintln!("the run took {:?}", t0.elapsed());
    let o = |s: &str| step(&run, s)["outputs"].clone();
    assert_eq!(step(&run, "login")["status"], "succeeded", "{run:#}");
    assert_eq!(o("login")["greeting"], "Welcome alice");
    assert_eq!(o("login")["lang"], "fr");
    assert_eq!(o("login")["leak"], "***", "a secret in an output is masked");
    assert_eq!(o("late")["extract"], "rendered late");
    assert_eq!(
        o("prices")["rows"],
        serde_json::json!([{"Item": "apple", "Price": "1.20"}, {"Item": "pear", "Price": "0.90"}])
    );
    assert_eq!(
        o("prices")["eval"],
        serde_json::json!({"title": "Prices", "n": 4})
    );
    let shot = PathBuf::from(o("prices")["shot"].as_str().expect("shot path"));
    assert!(shot.starts_with(env.home.join("logs").join("runs").join(&id)));
    assert_eq!(png_size(&std::fs::read(&shot).expect("png")), (640, 480));
    assert_eq!(o("cookie-read")["extract"], "session=kept-42");
    assert!(
        o("cookie-read")["jar"]
            .as_array()
            .is_some_and(|j| j.iter().any(|c| c["name"] == "session")),
        "{:#}",
        o("cookie-read")
    );
    assert_eq!(step(&run, "dialog")["status"], "succeeded", "{run:#}");
    assert_eq!(o("dialog")["dialogs"][0]["message"], "hello from the page");
    assert_eq!(o("dialog")["extract"], "after");
    let hang = step(&run, "hang");
    assert_eq!(hang["status"], "failed");
    assert!(
        hang["message"]
            .as_str()
            .unwrap_or("")
            .contains("timed out after 3s"),
        "{hang:#}"
    );
    assert_eq!(step(&run, "after-hang")["status"], "succeeded", "{run:#}");
    assert_eq!(o("after-hang")["cells"][0], "apple");
    let bad = step(&run, "bad-selector");
    assert_eq!(bad["status"], "failed");
    assert!(
        bad["message"]
            .as_str()
            .unwrap_or("")
            .contains("invalid selector `td[[`"),
        "{bad:#}"
    );
    let refused = step(&run, "refused");
    assert_eq!(refused["status"], "failed");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("browser.allow_schemes"),
        "{refused:#}"
    );
    // The secret never reached a log or the store.
    let logs = env.home.join("logs").join("runs").join(&id);
    for e in std::fs::read_dir(&logs).expect("logs").flatten() {
        if e.path().is_file() {
            assert!(
                !read(&e.path()).contains("s3cr3t-pw"),
                "{}",
                e.path().display()
            );
        }
    }
    assert!(!run.to_string().contains("s3cr3t-pw"));
    // The screenshot is listed with the run.
    let shown = env.claw(&["run", "show", &id]);
    assert!(shown.stdout.contains("prices.png"), "{}", shown.stdout);
    // No Chromium outlived the run; the cookie did.
    assert!(chromium_pids(&profile_dir(&env, "default")).is_empty());
    env.workflow(
        "again",
        &format!(
            "steps:\n  - name: read\n    type: browser\n    url: {base}/whoami\n    actions:\n      - extract: \"#c\"\n"
        ),
    );
    let again = env.claw(&["workflow", "run", "again", "--json"]);
    let id2 = again.json()["id"].as_str().expect("run id").to_owned();
    let run2 = env.show(&id2);
    assert_eq!(
        step(&run2, "read")["outputs"]["extract"],
        "session=kept-42",
        "{run2:#}"
    );
}

/// Chromium killed in the middle of a step: that step fails saying so, the next one gets a
/// fresh browser; a cancel during a step then leaves no Chromium process behind.
#[test]
fn a_killed_browser_is_replaced_and_cancel_leaves_nothing() {
    let (addr, table_hits) = serve();
    let env = Env::new();
    let base = format!("http://{addr}");
    env.workflow(
        "fragile",
        &format!(
            r##"steps:
  - name: waits
    type: browser
    url: {base}/table
    on_failure: continue
    actions:
      - wait_for: {{selector: "#never", timeout: 60s}}
  - name: fresh
    type: browser
    url: {base}/table
    on_failure: continue
    actions:
      - extract: td
  - name: stuck
    type: browser
    url: {base}/table
    on_failure: continue
    actions:
      - wait_for: {{selector: "#never", timeout: 60s}}
"##
        ),
    );
    let profile = profile_dir(&env, "default");
    let child = env.spawn(&["workflow", "run", "fragile", "--json"]);
    // Once the first step's page has loaded it is waiting: kill the browser under it.
    let first = wait_for(Duration::from_secs(60), || {
        (table_hits.load(Ordering::SeqCst) >= 1).then_some(())?;
        chromium_pids(&profile).first().copied()
    })
    .expect("Chromium never ran the first step");
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let id = env.last_run().expect("run");
    let second = wait_for(Duration::from_secs(60), || {
        (table_hits.load(Ordering::SeqCst) >= 3).then_some(())?;
        chromium_pids(&profile).into_iter().find(|p| *p != first)
    })
    .expect("no fresh browser ran the third step");
    std::thread::sleep(Duration::from_millis(300));
    env.claw(&["run", "cancel", &id]).expect_code(0);
    let out: Ran = child.wait_with_output().expect("wait").into();
    let run = env.show(&id);
    let waits = step(&run, "waits");
    assert_eq!(waits["status"], "failed", "{run:#}");
    assert!(
        waits["message"]
            .as_str()
            .unwrap_or("")
            .contains("the browser crashed or was killed during action 2"),
        "{waits:#}"
    );
    assert_eq!(step(&run, "fresh")["status"], "succeeded", "{run:#}");
    assert_eq!(step(&run, "fresh")["outputs"]["extract"], "apple");
    assert_eq!(
        step(&run, "stuck")["status"],
        "cancelled",
        "{run:#}\n{}",
        out.stderr
    );
    for pgid in [first, second] {
        assert!(
            wait_for(Duration::from_secs(10), || group_members(pgid)
                .is_empty()
                .then_some(()))
            .is_some(),
            "processes of Chromium's group {pgid} are left: {:?}",
            group_members(pgid)
        );
    }
}

/// `claw browse` against the same pages, and what it refuses.
#[test]
fn claw_browse_reads_pages_and_refuses_bad_input() {
    let (addr, _) = serve();
    let env = Env::new();
    let base = format!("http://{addr}");
    let rows = env.claw(&[
        "browse",
        "table",
        &format!("{base}/table"),
        "-s",
        "#prices",
        "--json",
    ]);
    rows.expect_code(0);
    assert_eq!(rows.json()[1]["Item"], "pear");
    let js = env.claw(&[
        "browse",
        "js",
        &format!("{base}/table"),
        "() => [document.title, 1 + 1]",
    ]);
    js.expect_code(0);
    assert_eq!(js.json(), serde_json::json!(["Prices", 2]));
    let profiles = env.claw(&["browse", "profiles", "--json"]);
    profiles.expect_code(0);
    assert_eq!(profiles.json()[0]["name"], "default");
    assert_eq!(profiles.json()[0]["in_use"], false);

    let refused = env.claw(&["browse", "open", "file:///etc/hostname"]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("browser.allow_schemes"),
        "{}",
        refused.stderr
    );

    let missing = env
        .command(&["browse", "open", &format!("{base}/table")])
        .env("CHROME_PATH", env.path("no-chromium-here"))
        .output()
        .expect("run");
    let missing: Ran = missing.into();
    missing.expect_code(3);
    assert!(missing.stderr.contains("CHROME_PATH"), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("`chromium` package"),
        "{}",
        missing.stderr
    );

    env.workflow(
        "typo",
        "steps:\n  - name: b\n    type: browser\n    url: https://example.com\n    actions:\n      - clik: \"#go\"\n      - goto: \"${{ secrets.X }}\"\n",
    );
    let bad = env.claw(&["workflow", "validate", "typo"]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("unknown browser action `clik`"),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("typo.yaml:6:9"), "{}", bad.stderr);
    assert!(bad.stderr.contains("click"), "did you mean: {}", bad.stderr);
    assert!(
        bad.stderr.contains("secrets may appear only in `fill`"),
        "{}",
        bad.stderr
    );

    env.claw(&["browse", "profiles", "delete", "default"])
        .expect_code(0);
    assert!(!profile_dir(&env, "default").exists());
    env.claw(&["browse", "profiles", "delete", "../x"])
        .expect_code(2);
}

/// claw killed with SIGKILL in the middle of a browser step: the kernel stops its Chromium (the
/// launcher's parent-death signal) and nothing of Chromium's group is left.
#[test]
fn chromium_dies_with_a_killed_claw() {
    let (addr, table_hits) = serve();
    let env = Env::new();
    env.workflow(
        "hangs",
        &format!(
            "steps:\n  - name: w\n    type: browser\n    url: http://{addr}/table\n    actions:\n      - wait_for: {{selector: \"#never\", timeout: 60s}}\n"
        ),
    );
    let mut child = env.spawn(&["workflow", "run", "hangs"]);
    let pid = wait_for(Duration::from_secs(60), || {
        (table_hits.load(Ordering::SeqCst) >= 1).then_some(())?;
        chromium_pids(&profile_dir(&env, "default"))
            .first()
            .copied()
    })
    .expect("Chromium never loaded the page");
    child.kill().expect("kill claw");
    let _ = child.wait();
    assert!(
        wait_for(Duration::from_secs(10), || group_members(pid)
            .is_empty()
            .then_some(()))
        .is_some(),
        "Chromium outlived claw: {:?}",
        group_members(pid)
    );
}
