//! The memory page: what `memory.db` holds (the newest first, or a full-text search with `q`),
//! its counts by category; `/api/v1/memory` is its JSON twin. Read-only: nothing here
//! remembers or forgets, and reading creates no `memory.db`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Fail, api, col, json_error, page_of, table, text};
use crate::web::{Web, WebState};

#[derive(Debug, serde::Deserialize, Default)]
pub(crate) struct MemoryQuery {
    q: Option<String>,
    category: Option<String>,
    project: Option<String>,
    limit: Option<u32>,
}

fn data_memory(web: &Web, q: &MemoryQuery) -> Result<Value, Fail> {
    let home = &web.engine.dirs.home;
    if !crate::memory::db_path(home).exists() {
        return Ok(json!({"exists": false, "stats": Value::Null, "memories": []}));
    }
    let m = crate::memory::Memory::open(home, "dashboard").map_err(Fail::internal)?;
    let opt = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    let (category, project) = (opt(&q.category), opt(&q.project));
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let found = match opt(&q.q) {
        Some(text) => m.search(&text, category.as_deref(), project.as_deref(), limit),
        None => m.list(category.as_deref(), project.as_deref(), limit),
    }
    .map_err(Fail::internal)?;
    let stats = m.stats().map_err(Fail::internal)?;
    Ok(json!({
        "exists": true,
        "stats": crate::memory::stats_json(&stats),
        "memories": found.iter().map(crate::memory::entry_json).collect::<Vec<_>>(),
    }))
}

pub(crate) async fn memory(
    State(web): WebState,
    headers: HeaderMap,
    Query(q): Query<MemoryQuery>,
) -> Response {
    page_of(
        &web,
        &headers,
        |w| data_memory(w, &q),
        |who, d| {
            let items: Vec<Value> = d["memories"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut e| {
                    e["tags_text"] = json!(
                        e["tags"]
                            .as_array()
                            .map(|t| t.iter().map(text).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    );
                    e
                })
                .collect();
            let note = if d["exists"] == json!(true) {
                let by = d["stats"]["by_category"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                format!(
                    "{} memor{} ({by}). ?q=WORDS searches (every word a prefix, best first); ?category= and ?project= filter.",
                    text(&d["stats"]["total"]),
                    if d["stats"]["total"] == json!(1) {
                        "y"
                    } else {
                        "ies"
                    }
                )
            } else {
                "No memory.db yet (`claw memory remember KEY VALUE`).".to_owned()
            };
            table(
                who,
                "Memory",
                note,
                &items,
                &[
                    col("id", "id"),
                    col("category", "category"),
                    col("key", "key"),
                    col("value", "value"),
                    col("tags_text", "tags"),
                    col("project", "project"),
                    col("access_count", "recalled"),
                    col("accessed_at", "last access"),
                ],
            )
        },
    )
}

pub(crate) async fn api_memory(
    State(web): WebState,
    headers: HeaderMap,
    q: Result<Query<MemoryQuery>, QueryRejection>,
) -> Response {
    let _who = api_auth!(web, headers);
    match q {
        Ok(Query(q)) => api(data_memory(&web, &q)),
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    }
}
