//! The tools `claw mcp` serves: the seed's names, parameters and defaults (its FastMCP
//! signatures), each with the JSON schema FastMCP derives from them, so a client configured for
//! the seed sees the same tools.

use serde_json::{Map, Value, json};

/// A parameter's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Bool,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Self::Str => "string",
            Self::Int => "integer",
            Self::Bool => "boolean",
        }
    }
}

/// One parameter: name, type, default (`None`: required).
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Option<Default>,
}

/// A default value.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    Str(&'static str),
    Int(i64),
    Bool(bool),
}

const fn req(name: &'static str, ty: Ty) -> Param {
    Param {
        name,
        ty,
        default: None,
    }
}

const fn s(name: &'static str, d: &'static str) -> Param {
    Param {
        name,
        ty: Ty::Str,
        default: Some(Default::Str(d)),
    }
}

const fn i(name: &'static str, d: i64) -> Param {
    Param {
        name,
        ty: Ty::Int,
        default: Some(Default::Int(d)),
    }
}

const fn b(name: &'static str, d: bool) -> Param {
    Param {
        name,
        ty: Ty::Bool,
        default: Some(Default::Bool(d)),
    }
}

/// A tool: its name, description, parameters, and whether it changes anything.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
}

use Ty::Str;

/// Every tool claw serves (the seed's, for the capabilities claw has).
pub const TOOLS: &[Spec] = &[
    // Memory.
    Spec {
        name: "remember",
        description: "Store a memory with a key, value, category, and optional tags.\n\nCategories: fact, preference, project_context, conversation_summary.\nTags: comma-separated string (e.g. \"network,ssh,homelab\").",
        params: &[
            req("key", Str),
            req("value", Str),
            s("category", "fact"),
            s("tags", ""),
            s("project", ""),
        ],
    },
    Spec {
        name: "recall",
        description: "Retrieve a memory by its exact key. Returns the stored value or 'not found'.",
        params: &[req("key", Str), s("category", ""), s("project", "")],
    },
    Spec {
        name: "search_memory",
        description: "Search memories by key, value or tags (full-text: every word a prefix, best match first). Returns formatted results.",
        params: &[
            req("query", Str),
            s("category", ""),
            s("project", ""),
            i("limit", 20),
        ],
    },
    Spec {
        name: "forget",
        description: "Delete a memory by key. Returns confirmation or not-found message.",
        params: &[req("key", Str), s("category", "")],
    },
    Spec {
        name: "list_memories",
        description: "List all memories, optionally filtered by category and project.",
        params: &[s("category", ""), s("project", ""), i("limit", 50)],
    },
    Spec {
        name: "memory_stats",
        description: "Return memory database statistics: total count, breakdown by category, date range.",
        params: &[],
    },
    // Workflows.
    Spec {
        name: "run_workflow",
        description: "Load and execute a workflow by name, returning step-by-step results.\n\nArgs:\n    name: Workflow name (matches filename without .yaml extension).\n    dry_run: If true, simulate execution without running commands.\n    wait: If false, return the run id as soon as the run is queued.",
        params: &[req("name", Str), b("dry_run", false), b("wait", true)],
    },
    Spec {
        name: "list_workflows",
        description: "List available workflow YAML files.",
        params: &[],
    },
    Spec {
        name: "show_workflow",
        description: "Show detailed steps of a workflow.\n\nArgs:\n    name: Workflow name (matches filename without .yaml extension).",
        params: &[req("name", Str)],
    },
    Spec {
        name: "validate_workflow",
        description: "Validate a workflow definition for errors.\n\nArgs:\n    name: Workflow name (matches filename without .yaml extension).",
        params: &[req("name", Str)],
    },
    // Audit.
    Spec {
        name: "audit_tail",
        description: "Show the most recent audit log entries.\n\nArgs:\n    limit: Number of entries to return (default 20).",
        params: &[i("limit", 20)],
    },
    Spec {
        name: "audit_search",
        description: "Search the audit log for entries matching a query string.\n\nArgs:\n    query: Case-insensitive search term to match against log entries.\n    limit: Maximum number of results to return (default 50).",
        params: &[req("query", Str), i("limit", 50)],
    },
    // Vault.
    Spec {
        name: "vault_list_keys",
        description: "List stored credential key names in the vault. Does NOT expose secret values.",
        params: &[],
    },
    Spec {
        name: "vault_status",
        description: "Check if the encrypted vault is initialized and accessible.",
        params: &[],
    },
    // Skills.
    Spec {
        name: "list_skills",
        description: "List all installed skills with their descriptions.",
        params: &[],
    },
    Spec {
        name: "skill_info",
        description: "Show detailed information about a skill.\n\nArgs:\n    name: Skill name as defined in skill.yaml.",
        params: &[req("name", Str)],
    },
    Spec {
        name: "run_skill",
        description: "Run an installed skill with optional arguments.\n\nArgs:\n    name: Skill name as defined in skill.yaml.\n    args: Comma-separated key=value pairs (e.g. \"host=nas,port=22\").",
        params: &[req("name", Str), s("args", "")],
    },
    // Messaging.
    Spec {
        name: "send_message",
        description: "Send a message through a channel (through the outbox: queued, then delivered).\n\nArgs:\n    channel: telegram, slack, discord, ntfy, email or webhook.\n    target: Chat or channel id, topic, address or URL (by channel).\n    message: The text.",
        params: &[req("channel", Str), req("target", Str), req("message", Str)],
    },
    Spec {
        name: "send_notification",
        description: "Send a message to every target of a profile of profiles.yaml.\n\nArgs:\n    profile: Profile name.\n    message: The text.",
        params: &[req("profile", Str), req("message", Str)],
    },
    Spec {
        name: "test_channel",
        description: "Check a channel's credentials against its service without sending anything.",
        params: &[req("channel", Str)],
    },
    Spec {
        name: "list_channels",
        description: "List the messaging channels, whether each is configured and what it needs.",
        params: &[],
    },
    Spec {
        name: "list_profiles",
        description: "List the notification profiles of profiles.yaml and their targets.",
        params: &[],
    },
    // Cron.
    Spec {
        name: "cron_list_jobs",
        description: "List all scheduled cron jobs with their schedule, status and next run.",
        params: &[],
    },
    Spec {
        name: "cron_add_job",
        description: "Add a cron job.\n\nArgs:\n    name: Job name.\n    schedule: Cron expression (5 fields), @hourly-style macro, 'every 5m' or 'daily at HH:MM'.\n    command: Shell command, workflow name, prompt, URL or skill name (by job_type).\n    job_type: shell, workflow, claude, webhook, skill or ssh.\n    output_channel: 'file', CHANNEL:TARGET or a profile name.",
        params: &[
            req("name", Str),
            req("schedule", Str),
            req("command", Str),
            s("job_type", "shell"),
            s("output_channel", "file"),
        ],
    },
    Spec {
        name: "cron_remove_job",
        description: "Remove a cron job by id (or unique id prefix, or name).",
        params: &[req("job_id", Str)],
    },
    Spec {
        name: "cron_enable_job",
        description: "Enable a cron job by id (or unique id prefix, or name).",
        params: &[req("job_id", Str)],
    },
    Spec {
        name: "cron_disable_job",
        description: "Disable a cron job by id (or unique id prefix, or name).",
        params: &[req("job_id", Str)],
    },
    Spec {
        name: "cron_job_logs",
        description: "Show the most recent output files of a cron job.\n\nArgs:\n    job_id: Job id (or unique id prefix, or name).\n    limit: How many output files, newest first (default 5).",
        params: &[req("job_id", Str), i("limit", 5)],
    },
    // SSH (read-only).
    Spec {
        name: "ssh_list_hosts",
        description: "List all configured SSH hosts with connection details.",
        params: &[],
    },
    Spec {
        name: "ssh_run",
        description: "Run a shell command on an SSH host, a group of hosts, or all.\n\nArgs:\n    target: Host alias, group name, or \"all\".\n    command: Shell command to execute.\n    timeout: Seconds before the command is stopped (default 30).",
        params: &[req("target", Str), req("command", Str), i("timeout", 30)],
    },
    Spec {
        name: "ssh_health_check",
        description: "Check every SSH host (ping and SSH), and write the health report.",
        params: &[],
    },
    Spec {
        name: "ssh_list_groups",
        description: "List SSH host groups and their members.",
        params: &[],
    },
    Spec {
        name: "browse_page",
        description: "Open a web page in headless Chromium and return its title, URL and text.\n\nArgs:\n    url: The page (http or https).\n    profile: The persistent browser profile (cookies and storage are kept).",
        params: &[req("url", Str), s("profile", "default")],
    },
    Spec {
        name: "browse_screenshot",
        description: "Take a PNG screenshot of a web page (or of one element) and return the file's path.\n\nArgs:\n    url: The page.\n    selector: Only this element (a CSS selector; empty: the page).\n    full_page: The whole page, not just the viewport.\n    profile: The persistent browser profile.",
        params: &[
            req("url", Str),
            s("selector", ""),
            b("full_page", false),
            s("profile", "default"),
        ],
    },
    Spec {
        name: "browse_extract",
        description: "Extract the text of the first element matching a CSS selector.\n\nArgs:\n    url: The page.\n    selector: A CSS selector (default: the whole body).\n    profile: The persistent browser profile.",
        params: &[
            req("url", Str),
            s("selector", "body"),
            s("profile", "default"),
        ],
    },
    Spec {
        name: "browse_extract_table",
        description: "Extract an HTML table as rows (objects keyed by its header cells).\n\nArgs:\n    url: The page.\n    selector: A CSS selector of the table.\n    profile: The persistent browser profile.",
        params: &[
            req("url", Str),
            s("selector", "table"),
            s("profile", "default"),
        ],
    },
    Spec {
        name: "browse_run_js",
        description: "Run JavaScript in a web page and return its result as JSON.\n\nArgs:\n    url: The page.\n    script: An expression, or a function that is called (`() => document.title`).\n    profile: The persistent browser profile.",
        params: &[req("url", Str), req("script", Str), s("profile", "default")],
    },
    Spec {
        name: "browse_fill_and_submit",
        description: "Fill a form and submit it, returning the page it leads to.\n\nArgs:\n    url: The page with the form.\n    fields: A JSON object from CSS selector to value, e.g. '{\"#name\": \"Ada\"}'.\n    submit_selector: The element to click (default: the form's submit button).\n    profile: The persistent browser profile.",
        params: &[
            req("url", Str),
            req("fields", Str),
            s("submit_selector", ""),
            s("profile", "default"),
        ],
    },
    Spec {
        name: "list_browser_profiles",
        description: "List the persistent browser profiles.",
        params: &[],
    },
];

/// The spec of a tool by name.
pub fn spec(name: &str) -> Option<&'static Spec> {
    TOOLS.iter().find(|t| t.name == name)
}

/// `search_memory` → `Search Memory`: FastMCP's property titles.
fn title(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The input schema FastMCP writes for the seed's signature.
pub fn schema(t: &Spec) -> Map<String, Value> {
    let mut props = Map::new();
    let mut required = Vec::new();
    for p in t.params {
        let mut prop = Map::new();
        if let Some(d) = p.default {
            prop.insert(
                "default".into(),
                match d {
                    Default::Str(v) => json!(v),
                    Default::Int(v) => json!(v),
                    Default::Bool(v) => json!(v),
                },
            );
        } else {
            required.push(json!(p.name));
        }
        prop.insert("title".into(), json!(title(p.name)));
        prop.insert("type".into(), json!(p.ty.name()));
        props.insert(p.name.into(), Value::Object(prop));
    }
    let mut s = Map::new();
    s.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        s.insert("required".into(), Value::Array(required));
    }
    s.insert("title".into(), json!(format!("{}Arguments", t.name)));
    s.insert("type".into(), json!("object"));
    s
}

/// The arguments of a call, checked against the tool's parameters: every required one given,
/// each of its type, no unknown one; defaults filled in. The error says what is wrong.
pub fn bind(t: &Spec, args: Option<&Map<String, Value>>) -> Result<Map<String, Value>, String> {
    let empty = Map::new();
    let args = args.unwrap_or(&empty);
    let mut problems = Vec::new();
    for k in args.keys() {
        if !t.params.iter().any(|p| p.name == k) {
            let known: Vec<&str> = t.params.iter().map(|p| p.name).collect();
            problems.push(format!(
                "unknown argument `{k}` (`{}` takes {})",
                t.name,
                if known.is_empty() {
                    "no arguments".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    let mut out = Map::new();
    for p in t.params {
        match (args.get(p.name), p.default) {
            (None | Some(Value::Null), None) => {
                problems.push(format!("missing required argument `{}`", p.name));
            }
            (None | Some(Value::Null), Some(d)) => {
                out.insert(
                    p.name.into(),
                    match d {
                        Default::Str(v) => json!(v),
                        Default::Int(v) => json!(v),
                        Default::Bool(v) => json!(v),
                    },
                );
            }
            (Some(v), _) => {
                let ok = match p.ty {
                    Ty::Str => v.is_string(),
                    Ty::Int => v.is_i64() || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok()),
                    Ty::Bool => v.is_boolean(),
                };
                if ok {
                    let v = match (p.ty, v.as_str()) {
                        (Ty::Int, Some(s)) => json!(s.parse::<i64>().unwrap_or_default()),
                        _ => v.clone(),
                    };
                    out.insert(p.name.into(), v);
                } else {
                    problems.push(format!(
                        "argument `{}` must be {} {}, got {v}",
                        p.name,
                        if p.ty == Ty::Int { "an" } else { "a" },
                        p.ty.name()
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(format!("{}: {}", t.name, problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_fastmcps() {
        let s = schema(spec("search_memory").unwrap());
        assert_eq!(
            Value::Object(s),
            json!({
                "properties": {
                    "query": {"title": "Query", "type": "string"},
                    "category": {"default": "", "title": "Category", "type": "string"},
                    "project": {"default": "", "title": "Project", "type": "string"},
                    "limit": {"default": 20, "title": "Limit", "type": "integer"},
                },
                "required": ["query"],
                "title": "search_memoryArguments",
                "type": "object",
            })
        );
    }

    #[test]
    fn arguments_are_checked() {
        let t = spec("search_memory").unwrap();
        let args = json!({"query": "x", "limit": "5"});
        let bound = bind(t, args.as_object()).unwrap();
        assert_eq!(bound["limit"], 5);
        assert_eq!(bound["category"], "");
        let bad = json!({"limit": true, "qeury": "x"});
        let e = bind(t, bad.as_object()).unwrap_err();
        assert!(e.contains("unknown argument `qeury`"), "{e}");
        assert!(e.contains("missing required argument `query`"), "{e}");
        assert!(e.contains("`limit` must be an integer"), "{e}");
    }
}
