//! Binding `-p key=value` arguments to a workflow's typed params.

use crate::config::diagnostic::did_you_mean;
use crate::workflow::Workflow;

/// Checks and converts the given values; fills in defaults. Every problem is reported.
pub fn bind(wf: &Workflow, given: &[(String, String)]) -> Result<serde_json::Value, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = serde_json::Map::new();
    for (key, text) in given {
        let Some(spec) = wf.params.iter().find(|p| p.name == *key) else {
            let hint = did_you_mean(key, wf.params.iter().map(|p| p.name.as_str()))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            let known = if wf.params.is_empty() {
                " (it takes none)".to_owned()
            } else {
                format!(
                    " (it takes: {})",
                    wf.params
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            errors.push(format!(
                "workflow `{}` has no param `{key}`{known}{hint}",
                wf.name
            ));
            continue;
        };
        match spec.kind.parse(text) {
            Ok(v) => {
                if !spec.choices.is_empty() && !spec.choices.contains(&v) {
                    let choices: Vec<String> = spec.choices.iter().map(display).collect();
                    errors.push(format!(
                        "param `{key}` must be one of {}, not `{text}`",
                        choices.join(", ")
                    ));
                } else {
                    out.insert(key.clone(), v);
                }
            }
            Err(why) => errors.push(format!("param `{key}`: {why}")),
        }
    }
    for spec in &wf.params {
        if out.contains_key(&spec.name) {
            continue;
        }
        match &spec.default {
            Some(d) => {
                out.insert(spec.name.clone(), d.clone());
            }
            None if spec.required => errors.push(format!(
                "param `{}` is required: pass it with -p {}=VALUE",
                spec.name, spec.name
            )),
            None => {
                out.insert(spec.name.clone(), serde_json::Value::Null);
            }
        }
    }
    if errors.is_empty() {
        Ok(serde_json::Value::Object(out))
    } else {
        Err(errors)
    }
}

fn display(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `KEY=VALUE` (the value may contain `=`).
pub fn split_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found `{s}`")),
    }
}

/// The environment variable name for a key: upper case, anything else than letters, digits and
/// `_` turned into `_` (`dry-run` → `DRY_RUN`).
pub fn env_key(prefix: &str, key: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + key.len());
    out.push_str(prefix);
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_are_shell_safe() {
        assert_eq!(env_key("WF_", "target-host"), "WF_TARGET_HOST");
        assert_eq!(env_key("CLAW_PARAM_", "env"), "CLAW_PARAM_ENV");
    }

    #[test]
    fn assignments_keep_later_equals() {
        assert_eq!(split_assignment("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(split_assignment("=x").is_err());
        assert!(split_assignment("x").is_err());
    }
}
