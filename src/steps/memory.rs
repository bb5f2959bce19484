//! The memory step (`type: memory`): remember, recall, search or forget in `<data>/memory.db`.
//!
//! ```yaml
//! - name: note-ip
//!   type: memory
//!   action: remember            # remember | recall | search | forget
//!   key: nas-ip
//!   value: ${{ steps.probe.outputs.ip }}
//!   category: fact              # fact | preference | project_context | conversation_summary
//!   tags: [network]
//!   project: homelab
//! ```
//!
//! `recall` fails when the key is not there unless the step gives a `default:`; `search` takes
//! `query:` (and `limit:`). Outputs: `remember` the stored entry's `id`, `key`, `value`,
//! `access_count`; `recall` `found`, `value` and the entry's fields; `search` `count` and
//! `results` (a list of entries); `forget` `removed`. The stdout is the seed's MCP tool text.
//! Every field may hold expressions. Changes are audited as `memory.*` with the run as actor.

use std::path::PathBuf;

use serde_json::{Value as Json, json};

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepReport};
use crate::memory::{self, Entry, Memory};
use crate::yaml::{Node, Value};

/// What the step does with memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Remember,
    Recall,
    Search,
    Forget,
}

impl Action {
    const NAMES: [&'static str; 4] = ["remember", "recall", "search", "forget"];

    fn parse(name: &str) -> Option<Self> {
        match name {
            "remember" => Some(Self::Remember),
            "recall" => Some(Self::Recall),
            "search" => Some(Self::Search),
            "forget" => Some(Self::Forget),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A memory step.
#[derive(Debug, Clone)]
pub struct MemoryStep {
    pub action: Action,
    /// The key (remember, recall, forget) or the query (search).
    pub key: String,
    pub value: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub project: Option<String>,
    pub default: Option<String>,
    pub limit: u32,
    /// The data directory, set by `prepare`.
    pub home: Option<PathBuf>,
}

impl Kind for MemoryStep {
    const NAMES: &'static [&'static str] = &["memory"];
    const KEYS: &'static [&'static str] = &[
        "action", "key", "value", "query", "category", "tags", "project", "default", "limit",
    ];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let step = cx.step.to_owned();
        let action = match node.get("action") {
            Some(n) => Action::parse(&cx.choice(n, "action", &Action::NAMES)?)?,
            None => {
                cx.err(
                    node.pos,
                    format!(
                        "step `{step}` (memory) needs `action:` (remember, recall, search or forget)"
                    ),
                );
                return None;
            }
        };
        let text = |cx: &mut LoadCx<'_>, field: &str| -> Option<String> {
            node.get(field).and_then(|n| cx.template_string(n, field))
        };
        let main = if action == Action::Search {
            "query"
        } else {
            "key"
        };
        let key = text(cx, main);
        let value = text(cx, "value");
        let category = text(cx, "category");
        let project = text(cx, "project");
        let default = text(cx, "default");
        let tags = match node.get("tags") {
            Some(n) if matches!(n.value, Value::Str(_)) => {
                let s = cx.template_string(n, "tags").unwrap_or_default();
                memory::parse_tags(&s)
            }
            Some(n) => {
                let list = cx.string_list(n, "tags");
                for (t, _) in &list {
                    cx.template(n, t);
                }
                list.into_iter().map(|(t, _)| t).collect()
            }
            None => Vec::new(),
        };
        let limit = node
            .get("limit")
            .and_then(|n| cx.positive_int(n, "limit"))
            .unwrap_or(memory::SEARCH_LIMIT);
        if let Some(c) = category.as_deref().filter(|c| !c.contains("${{"))
            && let Err(e) = memory::Category::parse(c)
            && let Some(n) = node.get("category")
        {
            cx.err(n.pos, e.to_string());
        }
        let Some(key) = key else {
            cx.err(
                node.pos,
                format!("step `{step}` (memory {}) needs `{main}:`", action.as_str()),
            );
            return None;
        };
        if action == Action::Remember && value.is_none() {
            cx.err(
                node.pos,
                format!("step `{step}` (memory remember) needs `value:`"),
            );
            return None;
        }
        Some(Self {
            action,
            key,
            value: value.unwrap_or_default(),
            category,
            tags,
            project,
            default,
            limit,
            home: None,
        })
    }

    fn idempotent(&self) -> bool {
        // An upsert, a read, a delete: running one again leaves the same memories.
        true
    }

    fn describe(&self) -> String {
        format!("memory {} {}", self.action.as_str(), self.key)
    }

    fn templates(&self) -> Vec<&str> {
        let mut t = vec![self.key.as_str(), self.value.as_str()];
        t.extend(self.category.as_deref());
        t.extend(self.project.as_deref());
        t.extend(self.default.as_deref());
        t.extend(self.tags.iter().map(String::as_str));
        t
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let render = |s: &str| cx.plain(s);
        let opt = |s: &Option<String>| s.as_deref().map(render).transpose();
        Ok(Self {
            action: self.action,
            key: render(&self.key)?,
            value: render(&self.value)?,
            category: opt(&self.category)?,
            tags: self
                .tags
                .iter()
                .map(|t| render(t))
                .collect::<Result<_, _>>()?,
            project: opt(&self.project)?,
            default: opt(&self.default)?,
            limit: self.limit,
            home: Some(cx.dirs.home.clone()),
        })
    }

    async fn run(&self, input: &StepInput, _rt: &Runtime) -> StepReport {
        let Some(home) = &self.home else {
            return StepReport::failed_for_good("the memory step was not prepared");
        };
        let actor = format!("run:{}", input.run_id);
        let store = match Memory::open(home, &actor) {
            Ok(s) => s,
            Err(e) => return StepReport::failed(e.to_string()),
        };
        match self.act(&store) {
            Ok(mut report) => {
                report.stdout = input.redactor.redact(&report.stdout).into_owned();
                report
            }
            Err(memory::MemoryError::InvalidCategory(c)) => {
                StepReport::failed_for_good(format!("Invalid category: {c}"))
            }
            Err(e) => StepReport::failed(e.to_string()),
        }
    }

    fn show(&self) -> Vec<(&'static str, Json)> {
        vec![
            ("action", self.action.as_str().into()),
            ("key", self.key.clone().into()),
        ]
    }
}

fn entry_outputs(e: &Entry) -> serde_json::Map<String, Json> {
    match memory::entry_json(e) {
        Json::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

impl MemoryStep {
    fn act(&self, store: &Memory) -> memory::Result<StepReport> {
        let category = self.category.as_deref().filter(|c| !c.is_empty());
        let project = self.project.as_deref();
        let mut report = StepReport::succeeded();
        match self.action {
            Action::Remember => {
                let e = store.remember(
                    &self.key,
                    &self.value,
                    category.unwrap_or("fact"),
                    &self.tags,
                    project.unwrap_or(""),
                )?;
                report.stdout = format!("Stored memory [{}] {} = {}\n", e.category, e.key, e.value);
                report.outputs = entry_outputs(&e);
            }
            Action::Recall => match store.recall(&self.key, category, project)? {
                Some(e) => {
                    report.stdout = format!(
                        "[{}] {} = {}{}\n",
                        e.category,
                        e.key,
                        e.value,
                        memory::tag_suffix(&e)
                    );
                    report.outputs = entry_outputs(&e);
                    report.outputs.insert("found".into(), true.into());
                }
                None => match &self.default {
                    Some(d) => {
                        report.stdout = format!("Not found: {:?} (default used)\n", self.key);
                        report.outputs.insert("found".into(), false.into());
                        report.outputs.insert("key".into(), self.key.clone().into());
                        report.outputs.insert("value".into(), d.clone().into());
                    }
                    None => {
                        return Ok(StepReport::failed_for_good(format!(
                            "Not found: {:?} (give the step a `default:` to go on without it)",
                            self.key
                        )));
                    }
                },
            },
            Action::Search => {
                let found = store.search(&self.key, category, project, self.limit)?;
                let mut text = format!("Found {} memor{}:\n", found.len(), plural(found.len()));
                for e in &found {
                    text.push_str(&format!(
                        "  [{}] {} = {}{}\n",
                        e.category,
                        e.key,
                        e.value,
                        memory::tag_suffix(e)
                    ));
                }
                report.stdout = text;
                report.outputs.insert("count".into(), found.len().into());
                report.outputs.insert(
                    "results".into(),
                    Json::Array(found.iter().map(memory::entry_json).collect()),
                );
            }
            Action::Forget => {
                let removed = store.forget(&self.key, category)?;
                report.stdout = if removed {
                    format!("Deleted memory: {:?}\n", self.key)
                } else {
                    format!("No memory found with key {:?}\n", self.key)
                };
                report.outputs = json!({"removed": removed, "key": self.key})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
            }
        }
        Ok(report)
    }
}

/// `y` or `ies`, as the seed counts memories.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}
