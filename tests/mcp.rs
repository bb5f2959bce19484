//! `claw mcp` driven by the official MCP Python client (`mcp` from PyPI, pinned, installed by
//! scripts/test.sh into target/mcp-venv): the tools and their schemas, a workflow run and its
//! result, remember/recall, an error as text, a bad argument refused.

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
    let python = mcp_python();
    let env = Env::new();
    env.workflow(
        "hello",
        "name: hello\nsteps:\n  - name: greet\n    command: echo hello from claw\n",
    );
    let out = std::process::Command::new(python)
        .args(["-c", CLIENT, env!("CARGO_BIN_EXE_claw")])
        .env("CLAW_HOME", &env.home)
        .env("CLAW_ROOT", &env.root)
        .current_dir(env.dir.path())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");

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

    // Changes are audited with the client as actor.
    let audit = std::fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"memory.remember\"") && l.contains("\"mcp:mcp\"")),
        "{audit}"
    );
}
