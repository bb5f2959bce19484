//! The LLM usage page: steps, input and output tokens per provider and model, from the outputs
//! of `llm` steps (as `claw llm usage` counts them), over all runs or those since `since`;
//! `/api/v1/llm` is its JSON twin.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Fail, api, col, json_error, page_of, table};
use crate::web::{Web, WebState};

#[derive(Debug, serde::Deserialize, Default)]
pub(crate) struct LlmQuery {
    since: Option<String>,
}

fn data_llm(web: &Web, q: &LlmQuery) -> Result<Value, Fail> {
    let since = match q.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(crate::time::instant::ms(
            crate::time::parse_instant(s, chrono::Utc::now())
                .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, e))?,
        )),
        None => None,
    };
    let rows: Vec<Value> = web
        .engine
        .store
        .llm_usage(since)?
        .into_iter()
        .map(|u| {
            json!({"provider": u.provider, "model": u.model, "steps": u.steps, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens})
        })
        .collect();
    Ok(json!({"usage": rows}))
}

pub(crate) async fn llm(
    State(web): WebState,
    headers: HeaderMap,
    Query(q): Query<LlmQuery>,
) -> Response {
    let since = q.since.clone().unwrap_or_default();
    page_of(
        &web,
        &headers,
        |w| data_llm(w, &q),
        |who, d| {
            let items = d["usage"].as_array().cloned().unwrap_or_default();
            let note = if since.trim().is_empty() {
                "Every run's `llm` steps. ?since=7d (or a date) counts recent runs only.".to_owned()
            } else {
                format!("Runs created since {since}.")
            };
            table(
                who,
                "LLM usage",
                note,
                &items,
                &[
                    col("provider", "provider"),
                    col("model", "model"),
                    col("steps", "steps"),
                    col("input_tokens", "input tokens"),
                    col("output_tokens", "output tokens"),
                ],
            )
        },
    )
}

pub(crate) async fn api_llm(
    State(web): WebState,
    headers: HeaderMap,
    q: Result<Query<LlmQuery>, QueryRejection>,
) -> Response {
    let _who = api_auth!(web, headers);
    match q {
        Ok(Query(q)) => api(data_llm(&web, &q)),
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    }
}
