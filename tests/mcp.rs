//! `claw mcp` driven by the official MCP Python client (`mcp` from PyPI, pinned, installed by
//! scripts/test.sh into target/mcp-venv): the tools and their schemas, a workflow run and its
//! result, remember/recall, an error as text, a bad argument refused; and the same tools over
//! streamable HTTP at `/mcp` on `claw serve`, refused without its bearer token.

#![allow(clippy::unwrap_used)]

use crate::common::Env;

fn mcp_python() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv/bin/python3");
    let ok = std::process::Command::new(&p)
        .args(["-c", "import mcp"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the mcp client is not installed: scripts/test.sh installs it into target/mcp-venv"
    );
    p
}

/// The official client running `script` (with `args` after it) in `env`'s data directory and
/// config root; the environment can be changed further before [`client_json`] runs it.
fn mcp_client(env: &Env, script: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(mcp_python());
    cmd.args(["-c", script])
        .args(args)
        .env("CLAW_HOME", &env.home)
        .env("CLAW_ROOT", &env.root)
        .current_dir(env.dir.path());
    cmd
}

/// Runs a client script; it must succeed and print one JSON document.
fn client_json(mut cmd: std::process::Command) -> serde_json::Value {
    let out = cmd.output().expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The client: connects to `claw mcp` over stdio and prints one JSON object of what it saw.
const CLIENT: &str = r#"
import asyncio, json, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError

async def main():
    params = StdioServerParameters(command=sys.argv[1], args=["mcp"], env=dict(os.environ))
    out = {}
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            tools = (await s.list_tools()).tools
            out["tools"] = {t.name: t.inputSchema for t in tools}
            def text(res):
                return {"text": res.content[0].text, "error": res.isError,
                        "data": res.structuredContent}
            out["remember"] = text(await s.call_tool("remember", {"key": "nas-ip", "value": "10.0.0.5", "tags": "network"}))
            out["recall"] = text(await s.call_tool("recall", {"key": "nas-ip"}))
            out["search"] = text(await s.call_tool("search_memory", {"query": "netw"}))
            out["run"] = text(await s.call_tool("run_workflow", {"name": "hello"}))
            out["missing"] = text(await s.call_tool("show_workflow", {"name": "nope"}))
            out["cron_add"] = text(await s.call_tool("cron_add_job", {"name": "tidy", "schedule": "0 5 * * *", "command": "echo tidied"}))
            out["cron_bad"] = text(await s.call_tool("cron_add_job", {"name": "oops", "schedule": "61 * * * *", "command": "true"}))
            out["cron_disable"] = text(await s.call_tool("cron_disable_job", {"job_id": "tidy"}))
            out["cron_list"] = text(await s.call_tool("cron_list_jobs", {}))
            out["cron_logs"] = text(await s.call_tool("cron_job_logs", {"job_id": "tidy"}))
            out["cron_remove"] = text(await s.call_tool("cron_remove_job", {"job_id": "tidy"}))
            out["skill"] = text(await s.call_tool("run_skill", {"name": "greet", "args": "who=mcp, code=0"}))
            out["skill_failed"] = text(await s.call_tool("run_skill", {"name": "greet", "args": "code=3"}))
            try:
                res = await s.call_tool("search_memory", {"query": "x", "limit": "lots"})
                out["bad"] = {"text": res.content[0].text, "error": res.isError}
            except McpError as e:
                out["bad"] = {"text": str(e), "error": True}
    print(json.dumps(out))

asyncio.run(main())
"#;

#[test]
fn the_official_client_lists_calls_and_runs_over_stdio() {
    let env = Env::new();
    env.workflow(
        "hello",
        "name: hello\nsteps:\n  - name: greet\n    command: echo hello from claw\n",
    );
    let skill = env.root.join("skills/greet");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("skill.yaml"),
        "name: greet\nversion: \"1.0.0\"\ndescription: says hello\nauthor: tests\nscript: run.sh\n",
    )
    .unwrap();
    std::fs::write(
        skill.join("run.sh"),
        "echo \"hello ${SKILL_WHO:-nobody}\"\nexit \"${SKILL_CODE:-0}\"\n",
    )
    .unwrap();
    let v = client_json(mcp_client(&env, CLIENT, &[env!("CARGO_BIN_EXE_claw")]));

    // The seed's names and FastMCP's schemas for them.
    let tools = v["tools"].as_object().unwrap();
    for name in [
        "remember",
        "recall",
        "search_memory",
        "forget",
        "list_memories",
        "memory_stats",
        "run_workflow",
        "list_workflows",
        "show_workflow",
        "validate_workflow",
        "audit_tail",
        "audit_search",
        "vault_list_keys",
        "vault_status",
        "list_skills",
        "skill_info",
        "ssh_list_hosts",
        "ssh_list_groups",
    ] {
        assert!(tools.contains_key(name), "no tool {name}");
    }
    assert_eq!(
        tools["remember"],
        serde_json::json!({
            "properties": {
                "key": {"title": "Key", "type": "string"},
                "value": {"title": "Value", "type": "string"},
                "category": {"default": "fact", "title": "Category", "type": "string"},
                "tags": {"default": "", "title": "Tags", "type": "string"},
                "project": {"default": "", "title": "Project", "type": "string"},
            },
            "required": ["key", "value"],
            "title": "rememberArguments",
            "type": "object",
        })
    );

    assert_eq!(
        v["remember"]["text"],
        "Stored memory [fact] nas-ip = 10.0.0.5 (id=1, tags=['network'], project='')"
    );
    assert!(
        v["recall"]["text"]
            .as_str()
            .unwrap()
            .starts_with("[fact] nas-ip = 10.0.0.5 [network]")
    );
    assert_eq!(v["recall"]["data"]["access_count"], 1);
    assert_eq!(v["search"]["data"]["results"][0]["key"], "nas-ip");

    let run = &v["run"];
    assert_eq!(run["error"], false, "{run}");
    let text = run["text"].as_str().unwrap();
    assert!(text.starts_with("Workflow 'hello' — 1 step(s):"), "{text}");
    assert!(
        text.contains("[PASSED] greet") && text.contains("hello from claw"),
        "{text}"
    );
    assert_eq!(run["data"]["status"], "succeeded");
    let id = run["data"]["run_id"].as_str().unwrap();
    let shown = env.show(id);
    assert_eq!(shown["status"], "succeeded");

    assert_eq!(v["missing"]["error"], true);
    assert!(
        v["missing"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Error showing workflow 'nope':")
    );
    assert_eq!(v["bad"]["error"], true);
    assert!(
        v["bad"]["text"]
            .as_str()
            .unwrap()
            .contains("argument `limit` must be an integer"),
        "{}",
        v["bad"]
    );

    // Cron jobs: added (a bad schedule refused), disabled, listed, removed; audited as the client.
    let add = &v["cron_add"];
    assert_eq!(add["error"], false, "{add}");
    assert!(
        add["text"].as_str().unwrap().starts_with("Added cron job "),
        "{add}"
    );
    assert_eq!(v["cron_bad"]["error"], true);
    assert!(
        v["cron_bad"]["text"]
            .as_str()
            .unwrap()
            .contains("invalid schedule"),
        "{}",
        v["cron_bad"]
    );
    assert!(
        v["cron_disable"]["text"]
            .as_str()
            .unwrap()
            .ends_with("(tidy) disabled"),
        "{}",
        v["cron_disable"]
    );
    assert_eq!(v["cron_list"]["data"]["jobs"][0]["name"], "tidy");
    assert_eq!(v["cron_list"]["data"]["jobs"][0]["enabled"], false);
    assert!(
        v["cron_logs"]["text"]
            .as_str()
            .unwrap()
            .starts_with("No output yet")
    );
    assert_eq!(v["cron_remove"]["data"]["removed"], true);
    let jobs = env.claw(&["cron", "list", "--json"]).json();
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
    // run_skill: its output, and a failure as text.
    assert_eq!(v["skill"]["error"], false, "{}", v["skill"]);
    assert_eq!(
        v["skill"]["text"], "Skill 'greet' succeeded\nhello mcp",
        "{}",
        v["skill"]
    );
    assert_eq!(v["skill_failed"]["error"], true);
    assert!(
        v["skill_failed"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Skill 'greet' failed"),
        "{}",
        v["skill_failed"]
    );

    // Changes are audited with the client as actor.
    let audit = std::fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"memory.remember\"") && l.contains("\"mcp:mcp\"")),
        "{audit}"
    );
    for action in ["cron.add", "cron.disable", "cron.remove", "skill.run"] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&format!("\"{action}\"")) && l.contains("\"mcp:mcp\"")),
            "{action}: {audit}"
        );
    }
}

/// The client over HTTP: refusals with plain requests (no token, a wrong one), then the
/// official client with the token. Prints one JSON object.
const HTTP_CLIENT: &str = r#"
import asyncio, json, sys, urllib.request, urllib.error
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

URL, TOKEN = sys.argv[1], sys.argv[2]
INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-03-26", "capabilities": {},
    "clientInfo": {"name": "probe", "version": "1"}}}).encode()

def plain(headers):
    req = urllib.request.Request(URL, data=INIT, method="POST", headers={
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode(),
                "www": e.headers.get("WWW-Authenticate")}

async def main():
    out = {"none": plain({}), "wrong": plain({"Authorization": "Bearer not-the-token"})}
    if TOKEN:
        headers = {"Authorization": "Bearer " + TOKEN}
        async with httpx.AsyncClient(headers=headers, timeout=60) as http:
            async with streamable_http_client(URL, http_client=http) as (r, w, _):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    tools = (await s.list_tools()).tools
                    out["tools"] = sorted(t.name for t in tools)
                    res = await s.call_tool("run_workflow", {"name": "hello"})
                    out["run"] = {"text": res.content[0].text, "error": res.isError,
                                  "data": res.structuredContent}
                    res = await s.call_tool("remember", {"key": "over", "value": "http"})
                    out["remember"] = {"text": res.content[0].text, "error": res.isError}
                    try:
                        res = await s.call_tool("recall", {"key": 5})
                        out["bad"] = {"text": res.content[0].text, "error": res.isError}
                    except Exception as e:
                        out["bad"] = {"text": str(e), "error": True}
    print(json.dumps(out))

asyncio.run(main())
"#;

/// `claw serve` on a free port with `vars`; killed on drop.
struct Daemon(std::process::Child, String);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(env: &Env, vars: &[(&str, &str)]) -> Daemon {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = env.command(&["serve", "--bind", &addr]);
    for (k, v) in vars {
        c.env(k, v);
    }
    let child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(child, addr);
    let up = crate::common::wait_for(std::time::Duration::from_secs(60), || {
        std::net::TcpStream::connect(&d.1).ok()
    });
    assert!(up.is_some(), "the daemon did not start");
    d
}

fn http_client(env: &Env, d: &Daemon, token: &str) -> serde_json::Value {
    // The HTTP client talks to the daemon only: no data directory of its own.
    let mut cmd = std::process::Command::new(mcp_python());
    cmd.args(["-c", HTTP_CLIENT, &format!("http://{}/mcp", d.1), token])
        .current_dir(env.dir.path());
    client_json(cmd)
}

#[test]
fn over_http_in_the_daemon_only_with_the_bearer_token() {
    let env = Env::new();
    env.workflow(
        "hello",
        "name: hello\nsteps:\n  - name: greet\n    command: echo hello over http\n",
    );

    // No token configured: refused, naming the setting that turns it on.
    {
        let d = daemon(&env, &[]);
        let v = http_client(&env, &d, "");
        assert_eq!(v["none"]["status"], 503, "{v}");
        assert!(v["none"]["body"].as_str().unwrap().contains("MCP_TOKEN"));
        assert_eq!(v["wrong"]["status"], 503, "{v}");
    }

    let token = "mcp-token-6b0e2f9d41c7a835";
    let d = daemon(&env, &[("MCP_TOKEN", token)]);
    let v = http_client(&env, &d, token);
    for k in ["none", "wrong"] {
        assert_eq!(v[k]["status"], 401, "{k}: {v}");
        assert_eq!(v[k]["www"], "Bearer");
        assert!(!v[k]["body"].as_str().unwrap().contains(token));
    }
    let tools = v["tools"].as_array().unwrap();
    for name in ["run_workflow", "remember", "recall", "list_workflows"] {
        assert!(tools.iter().any(|t| t == name), "no {name}: {v}");
    }
    let run = &v["run"];
    assert_eq!(run["error"], false, "{run}");
    assert_eq!(run["data"]["status"], "succeeded", "{run}");
    assert!(
        run["text"].as_str().unwrap().contains("hello over http"),
        "{run}"
    );
    assert_eq!(v["remember"]["error"], false, "{v}");
    assert_eq!(v["bad"]["error"], true, "{v}");
    assert!(
        v["bad"]["text"].as_str().unwrap().contains("key"),
        "{}",
        v["bad"]
    );

    // The refusals are audited, the calls carry the client's name; the token is nowhere.
    // (The daemon writes its audit entries behind: wait for them.)
    let audit = crate::common::wait_for(std::time::Duration::from_secs(20), || {
        let a = std::fs::read_to_string(env.home.join("audit.log")).ok()?;
        (a.lines().filter(|l| l.contains("\"mcp.refused\"")).count() >= 2).then_some(a)
    })
    .expect("both refusals audited");
    let refused = audit
        .lines()
        .filter(|l| l.contains("\"mcp.refused\""))
        .count();
    assert_eq!(refused, 2, "{audit}");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"memory.remember\"") && l.contains("\"mcp:mcp\"")),
        "{audit}"
    );
    assert!(!audit.contains(token));
}

/// A loopback HTTP receiver for the `webhook` channel: answers 200 to each POST and keeps its
/// body.
fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            keep.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    (url, seen)
}

const MSG_CLIENT: &str = r#"
import asyncio, json, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

async def main():
    params = StdioServerParameters(command=sys.argv[1], args=["mcp"], env=dict(os.environ))
    out = {}
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            def text(res):
                return {"text": res.content[0].text, "error": res.isError,
                        "data": res.structuredContent}
            out["channels"] = text(await s.call_tool("list_channels", {}))
            out["profiles"] = text(await s.call_tool("list_profiles", {}))
            out["sent"] = text(await s.call_tool("send_message", {"channel": "webhook", "target": sys.argv[2], "message": "hello from mcp"}))
            out["notified"] = text(await s.call_tool("send_notification", {"profile": "ops", "message": "all hands"}))
            out["unknown"] = text(await s.call_tool("send_message", {"channel": "pigeon", "target": "x", "message": "coo"}))
            out["test"] = text(await s.call_tool("test_channel", {"channel": "webhook"}))
    print(json.dumps(out))

asyncio.run(main())
"#;

#[test]
fn messages_are_sent_through_the_outbox_by_the_messaging_tools() {
    let env = Env::new();
    let (url, seen) = receiver();
    env.write(
        "home/profiles.yaml",
        &format!("ops:\n  - channel: webhook\n    target: {url}\n"),
    );
    let v = client_json(mcp_client(
        &env,
        MSG_CLIENT,
        &[env!("CARGO_BIN_EXE_claw"), &url],
    ));
    let channels = v["channels"]["data"]["channels"].as_array().unwrap();
    assert!(
        channels
            .iter()
            .any(|c| c["name"] == "webhook" && c["configured"] == true),
        "{v}"
    );
    assert_eq!(v["profiles"]["data"]["profiles"][0]["name"], "ops", "{v}");
    assert_eq!(v["sent"]["error"], false, "{v}");
    assert_eq!(v["sent"]["text"], format!("webhook:{url} — sent"));
    assert_eq!(v["notified"]["error"], false, "{v}");
    assert_eq!(v["unknown"]["error"], true);
    assert!(
        v["unknown"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Error sending message:"),
        "{}",
        v["unknown"]
    );
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[0].contains("hello from mcp"), "{bodies:?}");
    assert!(bodies[1].contains("all hands"), "{bodies:?}");
    // Both went through the outbox.
    let outbox = env.claw(&["msg", "outbox", "--json"]).json();
    assert_eq!(outbox.as_array().map(Vec::len), Some(2), "{outbox}");
}

const SSH_CLIENT: &str = r#"
import asyncio, json, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

async def main():
    params = StdioServerParameters(command=sys.argv[1], args=["mcp"], env=dict(os.environ))
    out = {}
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            def text(res):
                return {"text": res.content[0].text, "error": res.isError,
                        "data": res.structuredContent}
            out["run"] = text(await s.call_tool("ssh_run", {"target": "box", "command": "echo from-$((40+2))"}))
            out["exit"] = text(await s.call_tool("ssh_run", {"target": "lab", "command": "exit 3"}))
            out["unknown"] = text(await s.call_tool("ssh_run", {"target": "nowhere", "command": "true"}))
            out["health"] = text(await s.call_tool("ssh_health_check", {}))
    print(json.dumps(out))

asyncio.run(main())
"#;

/// `ssh_run` and `ssh_health_check` against a real OpenSSH server on loopback (scripts/test.sh
/// installs openssh-server), its host key trusted first as `claw ssh trust` does.
#[test]
fn ssh_run_and_health_check_reach_a_real_sshd() {
    let sshd = std::path::Path::new("/usr/sbin/sshd");
    if !sshd.is_file() {
        assert!(
            std::env::var_os("CLAW_SKIP_SSH").is_some(),
            "/usr/sbin/sshd is missing: scripts/test.sh installs openssh-server (or set CLAW_SKIP_SSH=1)"
        );
        return;
    }
    let env = Env::new();
    let dir = env.path("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::create_dir_all("/run/sshd");
    let keygen = |p: &std::path::Path| {
        assert!(
            std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "claw-test", "-f"])
                .arg(p)
                .status()
                .unwrap()
                .success()
        );
    };
    let (hostkey, client) = (dir.join("hostkey"), dir.join("client"));
    keygen(&hostkey);
    keygen(&client);
    std::fs::copy(client.with_extension("pub"), dir.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nLogLevel ERROR\n",
            hostkey.display(),
            dir.join("sshd.pid").display(),
            dir.join("authorized_keys").display(),
        ),
    )
    .unwrap();
    let daemon = std::process::Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _sshd = Daemon(daemon, String::new());
    let up = crate::common::wait_for(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "sshd did not start");
    std::fs::write(
        env.root.join("hosts.yaml"),
        format!(
            "hosts:\n  - alias: box\n    hostname: 127.0.0.1\n    port: {port}\n    username: root\n    key_file: {}\n    groups: [lab]\n",
            client.display()
        ),
    )
    .unwrap();
    let user_home = env.path("userhome");
    std::fs::create_dir_all(&user_home).unwrap();
    let fp = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(hostkey.with_extension("pub"))
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let trusted = env
        .command(&["ssh", "trust", "box", "--fingerprint", &fp])
        .env("HOME", &user_home)
        .output()
        .unwrap();
    assert!(trusted.status.success(), "{trusted:?}");

    let mut cmd = mcp_client(&env, SSH_CLIENT, &[env!("CARGO_BIN_EXE_claw")]);
    cmd.env("HOME", &user_home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AUTO_ADD_HOST_KEYS");
    let v = client_json(cmd);
    let run = &v["run"];
    assert_eq!(run["error"], false, "{run}");
    let text = run["text"].as_str().unwrap();
    assert!(
        text.starts_with("── box (") && text.ends_with("s): ok\nfrom-42"),
        "{text}"
    );
    assert_eq!(run["data"]["results"][0]["exit_code"], 0);
    assert_eq!(v["exit"]["error"], true, "{v}");
    assert!(
        v["exit"]["text"].as_str().unwrap().contains("exit 3"),
        "{}",
        v["exit"]
    );
    assert_eq!(v["unknown"]["error"], true);
    assert!(
        v["unknown"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Error running on 'nowhere':"),
        "{}",
        v["unknown"]
    );
    let health = &v["health"];
    assert_eq!(health["data"]["hosts"][0]["alias"], "box", "{health}");
    assert_eq!(health["data"]["hosts"][0]["ssh_ok"], true, "{health}");
    let audit = std::fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"ssh.run\"")
            && l.contains("\"mcp:mcp\"")
            && l.contains("from-$((40+2))")),
        "{audit}"
    );
}

/// The pages the browser tools read: a form, a table, and the form's answer.
fn serve_pages() -> std::net::SocketAddr {
    use axum::response::Html;
    use axum::routing::{get, post};
    const FORM: &str = r#"<html><head><title>Sign up</title></head><body><h1>Hello pages</h1>
<form method="post" action="/signup"><input id="who" name="who"><button type="submit">Go</button></form>
<table id="t"><thead><tr><th>Item</th><th>Price</th></tr></thead><tbody><tr><td>apple</td><td>1.20</td></tr></tbody></table>
</body></html>"#;
    let app = axum::Router::new()
        .route("/form", get(|| async { Html(FORM) }))
        .route(
            "/signup",
            post(|body: String| async move {
                let who = body.strip_prefix("who=").unwrap_or("?").to_owned();
                Html(format!(
                    "<html><head><title>Done</title></head><body><p>Welcome {who}</p></body></html>"
                ))
            }),
        );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap()
}

const BROWSER_CLIENT: &str = r##"
import asyncio, json, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

async def main():
    base = sys.argv[2]
    params = StdioServerParameters(command=sys.argv[1], args=["mcp"], env=dict(os.environ))
    out = {}
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            out["tools"] = {t.name: t.inputSchema for t in (await s.list_tools()).tools}
            def text(res):
                return {"text": res.content[0].text, "error": res.isError,
                        "data": res.structuredContent}
            out["page"] = text(await s.call_tool("browse_page", {"url": base + "/form"}))
            out["extract"] = text(await s.call_tool("browse_extract", {"url": base + "/form", "selector": "h1"}))
            out["table"] = text(await s.call_tool("browse_extract_table", {"url": base + "/form", "selector": "#t"}))
            out["js"] = text(await s.call_tool("browse_run_js", {"url": base + "/form", "script": "() => 6 * 7"}))
            out["shot"] = text(await s.call_tool("browse_screenshot", {"url": base + "/form", "selector": "h1"}))
            out["submit"] = text(await s.call_tool("browse_fill_and_submit", {"url": base + "/form", "fields": json.dumps({"#who": "ada"}), "profile": "work"}))
            out["bad_fields"] = text(await s.call_tool("browse_fill_and_submit", {"url": base + "/form", "fields": "not json"}))
            out["bad_url"] = text(await s.call_tool("browse_page", {"url": "file:///etc/passwd"}))
            out["profiles"] = text(await s.call_tool("list_browser_profiles", {}))
    print(json.dumps(out))

asyncio.run(main())
"##;

#[test]
fn browser_tools_read_and_submit_pages_in_chromium() {
    let env = Env::new();
    let addr = serve_pages();
    let v = client_json(mcp_client(
        &env,
        BROWSER_CLIENT,
        &[env!("CARGO_BIN_EXE_claw"), &format!("http://{addr}")],
    ));
    let tools = v["tools"].as_object().unwrap();
    for name in [
        "browse_page",
        "browse_screenshot",
        "browse_extract",
        "browse_extract_table",
        "browse_run_js",
        "browse_fill_and_submit",
        "list_browser_profiles",
    ] {
        assert!(tools.contains_key(name), "no tool {name}");
    }
    assert_eq!(
        tools["browse_extract"],
        serde_json::json!({
            "properties": {
                "url": {"title": "Url", "type": "string"},
                "selector": {"default": "body", "title": "Selector", "type": "string"},
                "profile": {"default": "default", "title": "Profile", "type": "string"},
            },
            "required": ["url"],
            "title": "browse_extractArguments",
            "type": "object",
        })
    );
    let page = &v["page"];
    assert_eq!(page["error"], false, "{page}");
    let text = page["text"].as_str().unwrap();
    assert!(
        text.starts_with("Title: Sign up\nURL: http://") && text.contains("Hello pages"),
        "{text}"
    );
    assert_eq!(v["extract"]["text"], "Hello pages", "{}", v["extract"]);
    assert_eq!(
        v["table"]["data"]["rows"],
        serde_json::json!([{"Item": "apple", "Price": "1.20"}]),
        "{}",
        v["table"]
    );
    assert_eq!(v["js"]["text"], "42", "{}", v["js"]);
    let shot = std::path::PathBuf::from(v["shot"]["data"]["path"].as_str().unwrap());
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{}", v["shot"]);
    assert!(shot.starts_with(&env.home), "{}", shot.display());
    let submit = &v["submit"];
    assert_eq!(submit["error"], false, "{submit}");
    assert!(
        submit["text"].as_str().unwrap().contains("Welcome ada"),
        "{submit}"
    );
    assert_eq!(submit["data"]["title"], "Done");
    assert_eq!(v["bad_fields"]["error"], true);
    assert!(
        v["bad_fields"]["text"]
            .as_str()
            .unwrap()
            .contains("`fields` must be a JSON object"),
        "{}",
        v["bad_fields"]
    );
    assert_eq!(v["bad_url"]["error"], true, "{}", v["bad_url"]);
    let profiles = v["profiles"]["text"].as_str().unwrap();
    assert!(
        profiles.contains("default") && profiles.contains("work"),
        "{profiles}"
    );
    // The client has closed its session and `claw mcp` has exited: no Chromium of this data
    // directory is left (the default and the `work` profiles were both used).
    for profile in ["default", "work"] {
        let dir = env.home.join("browser").join("profiles").join(profile);
        assert!(
            crate::browser::chromium_pids(&dir).is_empty(),
            "a Chromium of profile {profile} outlived claw mcp"
        );
    }
    let audit = std::fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"browser.submit\"")
            && l.contains("\"mcp:mcp\"")
            && l.contains("#who")
            && !l.contains("\"ada\"")),
        "{audit}"
    );
}

/// `claw mcp` over stdio driven by hand (newline-delimited JSON-RPC): initialize, then one
/// `browse_page` call; returns the child once the answer came and Chromium runs.
fn mcp_with_a_browser(env: &Env, url: &str) -> (std::process::Child, i32) {
    use std::io::{BufRead as _, Write as _};
    let mut child = env
        .command(&["mcp"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: serde_json::Value| writeln!(stdin, "{v}").unwrap();
    send(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {},
        "clientInfo": {"name": "by-hand", "version": "1"}}}),
    );
    send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "browse_page", "arguments": {"url": url}}}),
    );
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "claw mcp ended early"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 2 {
            assert_eq!(v["result"]["isError"], false, "{v}");
            break;
        }
    }
    let dir = env.home.join("browser").join("profiles").join("default");
    let pids = crate::browser::chromium_pids(&dir);
    assert_eq!(pids.len(), 1, "one Chromium for the profile: {pids:?}");
    // The pipes stay open (kept by the child's handle and this leak) until the signal.
    std::mem::forget((stdin, stdout));
    (child, pids[0])
}

/// Chromium started by a browser tool ends with `claw mcp` however that ends: on SIGTERM claw
/// closes its browsers (their profiles written) and exits 0; on SIGKILL the kernel's
/// parent-death signal (set by the `claw __chromium` launcher) kills Chromium, and the rest of
/// its process group follows. Nothing of the group is left either way.
#[test]
fn chromium_ends_with_claw_mcp_on_sigterm_and_sigkill() {
    let addr = serve_pages();
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        let env = Env::new();
        let (mut child, chromium) = mcp_with_a_browser(&env, &format!("http://{addr}/form"));
        assert!(!crate::browser::group_members(chromium).is_empty());
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
        let status = child.wait().unwrap();
        if signal == nix::sys::signal::Signal::SIGTERM {
            // Handled: claw closed its browsers itself and exited normally.
            assert!(status.success(), "claw mcp after SIGTERM: {status}");
        }
        let gone = crate::common::wait_for(std::time::Duration::from_secs(10), || {
            crate::browser::group_members(chromium)
                .is_empty()
                .then_some(())
        });
        assert!(
            gone.is_some(),
            "after {signal} ({status}), Chromium's group outlived claw mcp: {:?}",
            crate::browser::group_members(chromium)
        );
    }
}
