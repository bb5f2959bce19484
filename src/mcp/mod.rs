//! `claw mcp`: claw as tools for any agent, over the Model Context Protocol (stdio), with the
//! official Rust SDK (`rmcp`).
//!
//! The tools are the seed's (`claw-mcp`): the same names, parameters and defaults (see
//! [`tools`]), and each answers with the seed's text, plus the same facts as structured content.
//! A failure is text too (`isError: true`), as the seed's tools convert errors into text; an
//! argument of the wrong type, a missing one or an unknown one is refused as invalid params,
//! naming it. Tools that change something act (and are audited) as `mcp:<client name>`.
//! `run_workflow` creates a run like `claw workflow run --detach` (so an approval gate waits for
//! a person like in any run) and, unless `wait` is false, waits for its end.

mod browser;
mod cron;
pub mod http;
mod msg;
mod ssh;
pub mod tools;

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt as _};
use serde_json::{Map, Value, json};

use crate::config::{Dirs, Settings};
use crate::memory::{self, Memory};

/// The MCP server of one data directory and config root.
#[derive(Debug, Clone)]
pub struct Server {
    dirs: Dirs,
    settings: Settings,
    /// Whether a daemon owns the data directory (it then executes the runs queued here).
    daemon_runs: fn(&std::path::Path) -> bool,
}

/// What a tool answers: the seed's text and the structured facts; `Err` is a failure as text.
type Answer = Result<(String, Value), String>;

fn arg_str<'a>(a: &'a Map<String, Value>, k: &str) -> &'a str {
    a.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn arg_int(a: &Map<String, Value>, k: &str) -> i64 {
    a.get(k).and_then(Value::as_i64).unwrap_or_default()
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn limit(a: &Map<String, Value>) -> u32 {
    u32::try_from(arg_int(a, "limit").max(1)).unwrap_or(u32::MAX)
}

impl Server {
    /// A server that executes the runs it queues itself (`claw run resume` processes), unless
    /// told how to see a daemon ([`Server::with_daemon_check`]).
    pub fn new(dirs: Dirs, settings: Settings) -> Self {
        Self {
            dirs,
            settings,
            daemon_runs: |_| false,
        }
    }

    /// How to tell whether a daemon owns the data directory: its queue then takes the runs
    /// queued here (the daemon serving `/mcp` answers always; `claw mcp` looks at the lease).
    #[must_use]
    pub fn with_daemon_check(mut self, daemon_runs: fn(&std::path::Path) -> bool) -> Self {
        self.daemon_runs = daemon_runs;
        self
    }

    /// Serves over stdin/stdout until the client closes them.
    pub async fn serve_stdio(self) -> Result<(), String> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| format!("MCP start-up failed: {e}"))?;
        running
            .waiting()
            .await
            .map_err(|e| format!("MCP server stopped: {e}"))?;
        Ok(())
    }

    fn memory(&self, actor: &str) -> Result<Memory, String> {
        Memory::open(&self.dirs.home, actor).map_err(|e| e.to_string())
    }

    /// Runs one tool with checked arguments.
    async fn call(&self, name: &str, a: &Map<String, Value>, actor: &str) -> Answer {
        match name {
            "remember" => self.remember(a, actor),
            "recall" => self.recall(a, actor),
            "search_memory" => self.search_memory(a, actor),
            "forget" => self.forget(a, actor),
            "list_memories" => self.list_memories(a, actor),
            "memory_stats" => self.memory_stats(actor),
            "run_workflow" => self.run_workflow(a, actor).await,
            "list_workflows" => self.list_workflows(),
            "show_workflow" => self.show_workflow(a),
            "validate_workflow" => self.validate_workflow(a),
            "audit_tail" => self.audit_tail(a),
            "audit_search" => self.audit_search(a),
            "vault_list_keys" => self.vault_list_keys(),
            "vault_status" => self.vault_status(),
            "list_skills" => self.list_skills(),
            "skill_info" => self.skill_info(a),
            "send_message" => self.send_message(a, actor).await,
            "send_notification" => self.send_notification(a, actor).await,
            "test_channel" => self.test_channel(a).await,
            "list_channels" => self.list_channels(),
            "list_profiles" => self.list_profiles(),
            "run_skill" => self.run_skill(a, actor).await,
            "cron_list_jobs" => self.cron_list_jobs(),
            "cron_add_job" => self.cron_add_job(a, actor),
            "cron_remove_job" => self.cron_remove_job(a, actor),
            "cron_enable_job" => self.cron_set_enabled(a, actor, true),
            "cron_disable_job" => self.cron_set_enabled(a, actor, false),
            "cron_job_logs" => self.cron_job_logs(a),
            "ssh_run" => self.ssh_run(a, actor).await,
            "ssh_health_check" => self.ssh_health_check(actor).await,
            "ssh_list_hosts" => self.ssh_list_hosts(),
            "ssh_list_groups" => self.ssh_list_groups(),
            "browse_page" => self.browse_page(a).await,
            "browse_screenshot" => self.browse_screenshot(a).await,
            "browse_extract" => self.browse_extract(a).await,
            "browse_extract_table" => self.browse_extract_table(a).await,
            "browse_run_js" => self.browse_run_js(a).await,
            "browse_fill_and_submit" => self.browse_fill_and_submit(a, actor).await,
            "list_browser_profiles" => self.list_browser_profiles(),
            other => Err(format!("Unknown tool: {other}")),
        }
    }

    fn remember(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let store = self.memory(actor)?;
        let e = store
            .remember(
                arg_str(a, "key"),
                arg_str(a, "value"),
                arg_str(a, "category"),
                &memory::parse_tags(arg_str(a, "tags")),
                arg_str(a, "project"),
            )
            .map_err(|e| format!("Error storing memory: {e}"))?;
        let tags: Vec<String> = e.tags.iter().map(|t| format!("'{t}'")).collect();
        Ok((
            format!(
                "Stored memory [{}] {} = {} (id={}, tags=[{}], project='{}')",
                e.category,
                e.key,
                e.value,
                e.id,
                tags.join(", "),
                e.project
            ),
            memory::entry_json(&e),
        ))
    }

    fn recall(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let key = arg_str(a, "key");
        let store = self.memory(actor)?;
        let found = store
            .recall(key, opt(arg_str(a, "category")), opt(arg_str(a, "project")))
            .map_err(|e| format!("Error recalling memory: {e}"))?;
        let Some(e) = found else {
            return Ok((format!("Not found: '{key}'"), json!({"found": false})));
        };
        let mut data = memory::entry_json(&e);
        data["found"] = json!(true);
        Ok((
            format!(
                "[{}] {} = {}{}\n  project='{}'  accessed={}x  created={}  last_access={}",
                e.category,
                e.key,
                e.value,
                memory::tag_suffix(&e),
                e.project,
                e.access_count,
                e.created_at,
                e.accessed_at
            ),
            data,
        ))
    }

    fn search_memory(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let q = arg_str(a, "query");
        let found = self
            .memory(actor)?
            .search(
                q,
                opt(arg_str(a, "category")),
                opt(arg_str(a, "project")),
                limit(a),
            )
            .map_err(|e| format!("Error searching memories: {e}"))?;
        let results: Vec<Value> = found.iter().map(memory::entry_json).collect();
        if found.is_empty() {
            return Ok((
                format!("No memories found matching '{q}'"),
                json!({"results": results}),
            ));
        }
        let mut lines = vec![
            format!(
                "Found {} memor{}:",
                found.len(),
                crate::steps::memory::plural(found.len())
            ),
            String::new(),
        ];
        for e in &found {
            lines.push(format!(
                "  [{}] {} = {}{}",
                e.category,
                e.key,
                e.value,
                memory::tag_suffix(e)
            ));
        }
        Ok((lines.join("\n"), json!({"results": results})))
    }

    fn forget(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let key = arg_str(a, "key");
        let removed = self
            .memory(actor)?
            .forget(key, opt(arg_str(a, "category")))
            .map_err(|e| format!("Error deleting memory: {e}"))?;
        let text = if removed {
            format!("Deleted memory: '{key}'")
        } else {
            format!("No memory found with key '{key}'")
        };
        Ok((text, json!({"removed": removed})))
    }

    fn list_memories(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let found = self
            .memory(actor)?
            .list(
                opt(arg_str(a, "category")),
                opt(arg_str(a, "project")),
                limit(a),
            )
            .map_err(|e| format!("Error listing memories: {e}"))?;
        let results: Vec<Value> = found.iter().map(memory::entry_json).collect();
        if found.is_empty() {
            return Ok(("No memories stored.".into(), json!({"results": results})));
        }
        let mut lines = vec![
            format!("{:>4}  {:<22}  {:<30}  Value", "ID", "Category", "Key"),
            format!(
                "{}  {}  {}  {}",
                "─".repeat(4),
                "─".repeat(22),
                "─".repeat(30),
                "─".repeat(40)
            ),
        ];
        for e in &found {
            let val = if e.value.chars().count() <= 60 {
                e.value.clone()
            } else {
                e.value.chars().take(57).chain("...".chars()).collect()
            };
            lines.push(format!(
                "{:>4}  {:<22}  {:<30}  {val}",
                e.id, e.category, e.key
            ));
        }
        lines.push(format!(
            "\nTotal: {} memor{}",
            found.len(),
            crate::steps::memory::plural(found.len())
        ));
        Ok((lines.join("\n"), json!({"results": results})))
    }

    fn memory_stats(&self, actor: &str) -> Answer {
        let s = self
            .memory(actor)?
            .stats()
            .map_err(|e| format!("Error getting stats: {e}"))?;
        let mut lines = vec![
            "Memory Store Statistics".to_owned(),
            format!("  Total entries: {}", s.total),
        ];
        if !s.by_category.is_empty() {
            lines.push("  By category:".into());
            for (c, n) in &s.by_category {
                lines.push(format!("    {c}: {n}"));
            }
        }
        if let Some(o) = &s.oldest {
            lines.push(format!("  Oldest entry: {o}"));
        }
        if let Some(n) = &s.newest {
            lines.push(format!("  Newest entry: {n}"));
        }
        Ok((lines.join("\n"), memory::stats_json(&s)))
    }

    fn load(&self, name: &str) -> Result<crate::workflow::Workflow, String> {
        crate::workflow::catalogue::Catalogue::new(&self.dirs)
            .load(name)
            .map_err(|e| e.to_string())
    }

    async fn run_workflow(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let name = arg_str(a, "name");
        let dry_run = a.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
        let wait = a.get("wait").and_then(Value::as_bool).unwrap_or(true);
        let fail = |e: String| format!("Error running workflow '{name}': {e}");
        let wf = self.load(name).map_err(fail)?;
        let problems = crate::workflow::catalogue::check_children(&self.dirs, &wf);
        if !problems.is_empty() {
            return Err(fail(problems.join("; ")));
        }
        let params = wf.bind_params(&[]).map_err(|e| fail(e.join("; ")))?;
        let engine = crate::engine::Engine::open(self.dirs.clone(), self.settings.clone())
            .map_err(|e| fail(e.to_string()))?;
        let run = engine
            .create_run(&crate::engine::NewRun {
                workflow: &wf,
                params,
                trigger: json!({"type": "mcp", "user": actor}),
                dry_run,
                claim: false,
            })
            .map_err(|e| fail(e.to_string()))?;
        if !(self.daemon_runs)(&self.dirs.home) {
            start_run(&self.dirs, &engine, &run.id).map_err(fail)?;
        }
        if !wait {
            return Ok((
                format!("Workflow '{name}' queued as run {}", run.id),
                json!({"run_id": run.id, "status": "queued"}),
            ));
        }
        let run = loop {
            let r = engine
                .store
                .find_run(&run.id)
                .map_err(|e| fail(e.to_string()))?;
            if r.status.is_finished() {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let steps = engine
            .store
            .steps(&run.id)
            .map_err(|e| fail(e.to_string()))?;
        let mut lines = vec![format!(
            "Workflow '{name}' {}— {} step(s):",
            if dry_run { "(dry run) " } else { "" },
            steps.len()
        )];
        let mut results = Vec::new();
        for s in &steps {
            let ms = match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            lines.push(format!(
                "  [{}] {}{}",
                step_label(s.status.as_str()),
                s.name,
                ms.filter(|m| *m > 0)
                    .map(|m| format!(" ({m}ms)"))
                    .unwrap_or_default()
            ));
            for l in s.stdout_tail.trim().lines().take(10) {
                lines.push(format!("    {l}"));
            }
            if let Some(m) = s.message.as_deref().filter(|m| !m.is_empty())
                && s.status.as_str() == "failed"
            {
                lines.push(format!("    ERROR: {m}"));
            }
            results.push(json!({"name": s.name, "status": s.status.as_str(),
                "exit_code": s.exit_code, "duration_ms": ms, "outputs": s.outputs}));
        }
        lines.push(format!("Run {}: {}", run.id, run.status.as_str()));
        let text = crate::redact::global()
            .redact(&lines.join("\n"))
            .into_owned();
        Ok((
            text,
            json!({"run_id": run.id, "status": run.status.as_str(), "steps": results,
                   "outputs": run.outputs, "error": run.error}),
        ))
    }

    fn list_workflows(&self) -> Answer {
        let files = crate::workflow::catalogue::Catalogue::new(&self.dirs).files();
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        if names.is_empty() {
            return Ok((
                "No workflows found in workflows/".into(),
                json!({"workflows": []}),
            ));
        }
        let text = format!(
            "Available workflows:\n{}",
            names
                .iter()
                .map(|n| format!("  - {n}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok((text, json!({"workflows": names})))
    }

    fn show_workflow(&self, a: &Map<String, Value>) -> Answer {
        let name = arg_str(a, "name");
        let wf = self
            .load(name)
            .map_err(|e| format!("Error showing workflow '{name}': {e}"))?;
        let mut lines = vec![format!("Workflow: {}", wf.name)];
        if !wf.description.is_empty() {
            lines.push(format!("Description: {}", wf.description));
        }
        lines.push(format!("\nSteps ({}):", wf.steps.len()));
        let mut steps = Vec::new();
        for (i, s) in wf.steps.iter().enumerate() {
            lines.push(format!("  {}. {}", i + 1, s.name));
            lines.push(format!("     type: {}", s.kind.type_name()));
            lines.push(format!("     command: {}", s.kind.describe()));
            steps.push(
                json!({"name": s.name, "type": s.kind.type_name(), "does": s.kind.describe()}),
            );
        }
        Ok((
            lines.join("\n"),
            json!({"name": wf.name, "description": wf.description, "steps": steps}),
        ))
    }

    fn validate_workflow(&self, a: &Map<String, Value>) -> Answer {
        let name = arg_str(a, "name");
        let catalogue = crate::workflow::catalogue::Catalogue::new(&self.dirs);
        let path = catalogue
            .find(name)
            .map_err(|e| format!("Error validating workflow '{name}': {e}"))?;
        match crate::workflow::load::load_file(&path) {
            Ok(wf) => Ok((
                format!("Workflow '{name}' is valid ({} steps).", wf.steps.len()),
                json!({"valid": true, "steps": wf.steps.len()}),
            )),
            Err(e) => {
                let problems: Vec<String> = e.render().lines().map(str::to_owned).collect();
                Ok((
                    format!(
                        "Workflow '{name}' has {} error(s):\n{}",
                        e.diagnostics.len(),
                        e.render()
                    ),
                    json!({"valid": false, "problems": problems}),
                ))
            }
        }
    }

    fn audit_lines(lines: &[crate::audit::Line]) -> (Vec<String>, Vec<Value>) {
        let mut text = Vec::new();
        let mut data = Vec::new();
        for l in lines {
            let v = l.value();
            let src = v
                .get("source")
                .or_else(|| v.get("actor"))
                .and_then(Value::as_str)
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            let detail = match v.get("detail") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            text.push(format!(
                "  {}  {}{src}  {detail}",
                v.get("ts").and_then(Value::as_str).unwrap_or("?"),
                v.get("action").and_then(Value::as_str).unwrap_or("?")
            ));
            data.push(v.clone());
        }
        (text, data)
    }

    fn audit_tail(&self, a: &Map<String, Value>) -> Answer {
        let n = usize::try_from(arg_int(a, "limit").max(1)).unwrap_or(20);
        let lines = crate::audit::AuditLog::in_dir(&self.dirs.home)
            .tail(n)
            .map_err(|e| format!("Error reading audit log: {e}"))?;
        if lines.is_empty() {
            return Ok(("Audit log is empty.".into(), json!({"entries": []})));
        }
        let (text, data) = Self::audit_lines(&lines);
        Ok((
            format!("Last {} audit entries:\n{}", lines.len(), text.join("\n")),
            json!({"entries": data}),
        ))
    }

    fn audit_search(&self, a: &Map<String, Value>) -> Answer {
        let q = arg_str(a, "query");
        let n = usize::try_from(arg_int(a, "limit").max(1)).unwrap_or(50);
        let mut lines = crate::audit::AuditLog::in_dir(&self.dirs.home)
            .search(&crate::audit::Query {
                text: Some(q.to_owned()),
                action: None,
                actor: None,
                since: None,
                until: None,
            })
            .map_err(|e| format!("Error searching audit log: {e}"))?;
        lines.truncate(n);
        if lines.is_empty() {
            return Ok((
                format!("No audit entries matching '{q}'."),
                json!({"entries": []}),
            ));
        }
        let (text, data) = Self::audit_lines(&lines);
        Ok((
            format!("{} match(es) for '{q}':\n{}", lines.len(), text.join("\n")),
            json!({"entries": data}),
        ))
    }

    fn vault_list_keys(&self) -> Answer {
        let keys = crate::vault::Vault::new(&self.dirs.home)
            .list()
            .map_err(|e| format!("Error listing vault keys: {e}"))?;
        if keys.is_empty() {
            return Ok((
                "Vault is empty — no keys stored.".into(),
                json!({"keys": []}),
            ));
        }
        Ok((
            format!(
                "{} key(s) in vault:\n{}",
                keys.len(),
                keys.iter()
                    .map(|k| format!("  - {k}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            json!({"keys": keys}),
        ))
    }

    fn vault_status(&self) -> Answer {
        let vault = crate::vault::Vault::new(&self.dirs.home);
        let (id, file) = (vault.identity_path(), vault.vault_path());
        if !id.exists() && vault.protection().is_none() {
            return Ok((
                "Vault not initialized. Run `claw vault init` to create identity and vault file."
                    .into(),
                json!({"initialized": false}),
            ));
        }
        if !file.exists() {
            return Ok((
                format!(
                    "Identity file exists at {}, but vault file is missing at {}. Run `claw vault init`.",
                    id.display(),
                    file.display()
                ),
                json!({"initialized": false}),
            ));
        }
        let keys = vault.list().map_err(|e| format!("Vault error: {e}"))?;
        Ok((
            format!(
                "Vault is initialized and accessible.\n  Identity: {}\n  Vault: {}\n  Keys stored: {}",
                id.display(),
                file.display(),
                keys.len()
            ),
            json!({"initialized": true, "keys": keys.len()}),
        ))
    }
}

impl Server {
    fn list_skills(&self) -> Answer {
        let catalog = crate::skills::discover(&self.dirs);
        if catalog.skills.is_empty() {
            return Ok(("No skills installed.".into(), json!({"skills": []})));
        }
        let mut lines = vec![format!("{} skill(s):", catalog.skills.len())];
        let mut data = Vec::new();
        for s in &catalog.skills {
            let m = &s.manifest;
            lines.push(format!("  {} (v{}) — {}", m.name, m.version, m.description));
            data.push(json!({"name": m.name, "version": m.version, "description": m.description}));
        }
        Ok((lines.join("\n"), json!({"skills": data})))
    }

    fn skill_info(&self, a: &Map<String, Value>) -> Answer {
        let name = arg_str(a, "name");
        let catalog = crate::skills::discover(&self.dirs);
        let Some(s) = catalog.get(name) else {
            return Err(format!("Skill not found: {name}"));
        };
        let m = &s.manifest;
        let mut lines = vec![
            format!("Skill: {}", m.name),
            format!("Version: {}", m.version),
            format!("Author: {}", m.author),
            format!("Description: {}", m.description),
            format!("Script: {}", s.script_path().display()),
        ];
        if !m.dependencies.is_empty() {
            lines.push(format!("Dependencies: {}", m.dependencies.join(", ")));
        }
        if !m.permissions.is_empty() {
            lines.push(format!("Permissions: {}", m.permissions.join(", ")));
        }
        lines.push(format!(
            "Slash command: {}",
            if m.slash_command { "yes" } else { "no" }
        ));
        Ok((
            lines.join("\n"),
            json!({"name": m.name, "version": m.version, "author": m.author,
                   "description": m.description, "script": s.script_path(),
                   "dependencies": m.dependencies, "permissions": m.permissions}),
        ))
    }

    fn hosts(&self) -> Result<crate::ssh::hosts::Registry, String> {
        crate::ssh::hosts::Registry::find(&self.dirs.root, &self.dirs.home).map_err(|e| e.render())
    }

    fn ssh_list_hosts(&self) -> Answer {
        let reg = self
            .hosts()
            .map_err(|e| format!("Error listing hosts: {e}"))?;
        if reg.hosts.is_empty() {
            return Ok((
                "No hosts configured. Create hosts.yaml.".into(),
                json!({"hosts": []}),
            ));
        }
        let mut lines = Vec::new();
        for h in &reg.hosts {
            let mut line = format!(
                "  {}: {}@{}:{} auth={}",
                h.alias,
                h.username,
                h.hostname,
                h.port,
                h.auth.as_str()
            );
            let groups: Vec<&str> = h
                .groups
                .iter()
                .map(String::as_str)
                .filter(|g| *g != "all")
                .collect();
            if !groups.is_empty() {
                line.push_str(&format!(" groups=[{}]", groups.join(", ")));
            }
            if !h.tags.is_empty() {
                let tags: Vec<String> = h.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                line.push_str(&format!(" tags=[{}]", tags.join(", ")));
            }
            lines.push(line);
        }
        let data: Vec<Value> = reg
            .hosts
            .iter()
            .map(crate::ssh::hosts::Host::json)
            .collect();
        Ok((
            format!("SSH hosts ({}):\n{}", reg.hosts.len(), lines.join("\n")),
            json!({"hosts": data}),
        ))
    }

    fn ssh_list_groups(&self) -> Answer {
        let groups = self
            .hosts()
            .map_err(|e| format!("Error listing groups: {e}"))?
            .groups();
        if groups.is_empty() {
            return Ok(("No host groups found.".into(), json!({"groups": {}})));
        }
        let lines: Vec<String> = groups
            .iter()
            .map(|(g, m)| format!("  {g}: {}", m.join(", ")))
            .collect();
        Ok((
            format!("Host groups ({}):\n{}", groups.len(), lines.join("\n")),
            json!({"groups": groups}),
        ))
    }
}

/// Executes a queued run in a `claw run resume ID` process of its own (as `claw workflow run
/// --detach` does without a daemon), so that it outlives this server and waits for approvals
/// like any run.
fn start_run(dirs: &Dirs, engine: &crate::engine::Engine, run_id: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the claw binary: {e}"))?;
    let dir = engine.dirs.run_log_dir(run_id);
    crate::fsutil::create_dirs_private(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let log = crate::fsutil::open_append_private(&dir.join("claw.log"))
        .map_err(|e| format!("cannot create the run's log: {e}"))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    #[allow(
        clippy::disallowed_methods,
        reason = "run_workflow: `claw run resume RUN` in a process of its own"
    )]
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home")
        .arg(&dirs.home)
        .arg("--root")
        .arg(&dirs.root)
        .args(["run", "resume", run_id, "--quiet"])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the run: {e}"))?;
    // Reaped when it ends, so a long-lived server leaves no zombies.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// The seed's status words in `run_workflow`'s text.
fn step_label(status: &str) -> String {
    match status {
        "succeeded" => "PASSED".into(),
        other => other.to_uppercase(),
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("claw", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "claw: workflows, runs, memory, audit log and vault names as tools (the seed's claw-mcp names).",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            tools::TOOLS
                .iter()
                .map(|t| Tool::new(t.name, t.description, tools::schema(t)))
                .collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = tools::spec(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        };
        let args = tools::bind(spec, request.arguments.as_ref())
            .map_err(|e| ErrorData::invalid_params(e, None))?;
        let client = context
            .peer
            .peer_info()
            .map(|i| i.client_info.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let actor = format!("mcp:{client}");
        let redactor = crate::redact::global();
        let result = match self.call(spec.name, &args, &actor).await {
            Ok((text, data)) => {
                let mut r = CallToolResult::success(vec![ContentBlock::text(
                    redactor.redact(&text).into_owned(),
                )]);
                r.structured_content = Some(redactor.redact_json(&data));
                r
            }
            Err(text) => CallToolResult::error(vec![ContentBlock::text(
                redactor.redact(&text).into_owned(),
            )]),
        };
        Ok(result.into())
    }
}
