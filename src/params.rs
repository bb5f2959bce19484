//! Typed inputs: a workflow's `params`, an approval gate's `input` fields, a skill's `args`.
//! Their specs, the conversion of text (`-p key=value`, `--input k=v`) to typed values, and the
//! environment variable names values travel under (`CLAW_PARAM_<KEY>`, `WF_<KEY>`, `SKILL_<KEY>`).

use crate::diagnostic::did_you_mean;
use crate::yaml::{Node, Reader, Value};

/// Checks and converts the given values for the params `specs` of workflow `owner`; fills in
/// defaults. Every problem is reported.
pub fn bind(
    owner: &str,
    specs: &[ParamSpec],
    given: &[(String, String)],
) -> Result<serde_json::Value, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = serde_json::Map::new();
    for (key, text) in given {
        let Some(spec) = specs.iter().find(|p| p.name == *key) else {
            let hint = did_you_mean(key, specs.iter().map(|p| p.name.as_str()))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            let known = if specs.is_empty() {
                " (it takes none)".to_owned()
            } else {
                format!(
                    " (it takes: {})",
                    specs
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            errors.push(format!(
                "workflow `{owner}` has no param `{key}`{known}{hint}"
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
    for spec in specs {
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

/// A typed input of a workflow.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamType,
    pub default: Option<serde_json::Value>,
    pub choices: Vec<serde_json::Value>,
    pub required: bool,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }

    /// Converts a command-line value (`-p key=value`) to this type.
    pub fn parse(self, text: &str) -> Result<serde_json::Value, String> {
        match self {
            Self::String => Ok(serde_json::Value::String(text.to_owned())),
            Self::Integer => text
                .trim()
                .parse::<i64>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("expected an integer, found `{text}`")),
            Self::Number => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| format!("expected a number, found `{text}`")),
            Self::Boolean => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(serde_json::Value::Bool(true)),
                "false" | "no" | "off" | "0" => Ok(serde_json::Value::Bool(false)),
                _ => Err(format!("expected true or false, found `{text}`")),
            },
        }
    }

    /// Whether a JSON value (a default, or an enum choice) has this type.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
        }
    }
}

/// Reads a `params:` mapping (also an approval gate's `input:` and a skill's `args:`): each
/// entry a default value, nothing (a required string), or `{type, default, enum, required,
/// description}`. Every problem goes to `r`.
pub fn load(r: &mut Reader, node: &Node) -> Vec<ParamSpec> {
    let mut out = Vec::new();
    for (name, spec) in r.entries(node, &[], "`params`") {
        let mut p = ParamSpec {
            name: name.to_owned(),
            kind: ParamType::String,
            default: None,
            choices: Vec::new(),
            required: false,
            description: String::new(),
        };
        match &spec.value {
            Value::Map(_) => {
                let mut kind_set = false;
                let mut required = None;
                let fields = r.entries(
                    spec,
                    &["type", "default", "enum", "required", "description"],
                    &format!("param `{name}`"),
                );
                for (k, v) in &fields {
                    if *k == "type" {
                        let t = r.string(v, "type").unwrap_or_default();
                        p.kind = match t.as_str() {
                            "string" | "str" => ParamType::String,
                            "integer" | "int" => ParamType::Integer,
                            "number" | "float" => ParamType::Number,
                            "boolean" | "bool" => ParamType::Boolean,
                            other => {
                                r.err_help(
                                    v.pos,
                                    format!("unknown param type `{other}` (expected string, integer, number or boolean)"),
                                    did_you_mean(other, ["string", "integer", "number", "boolean"]),
                                );
                                ParamType::String
                            }
                        };
                        kind_set = true;
                    }
                }
                for (k, v) in fields {
                    match k {
                        "default" => {
                            let value = v.to_json();
                            if !kind_set {
                                p.kind = infer_type(&value);
                            }
                            if !value.is_null() && !p.kind.accepts(&value) {
                                r.err(v.pos, format!("default of `{name}` is not of type {}", p.kind.as_str()));
                            }
                            if !value.is_null() {
                                p.default = Some(value);
                            }
                        }
                        "enum" => {
                            if let Value::Seq(items) = &v.value {
                                for item in items {
                                    let value = item.to_json();
                                    if !p.kind.accepts(&value) {
                                        r.err(item.pos, format!("choice for `{name}` is not of type {}", p.kind.as_str()));
                                    }
                                    p.choices.push(value);
                                }
                            } else {
                                r.err(v.pos, format!("`enum` must be a list, found {}", v.kind()));
                            }
                        }
                        "required" => required = r.boolean(v, "required"),
                        "description" => p.description = r.string(v, "description").unwrap_or_default(),
                        _ => {}
                    }
                }
                p.required = required.unwrap_or(p.default.is_none());
                if let Some(default) = &p.default
                    && !p.choices.is_empty() && !p.choices.contains(default) {
                        r.err(spec.pos, format!("default of `{name}` is not one of its `enum` choices"));
                    }
            }
            Value::Null => p.required = true,
            Value::Seq(_) => r.err(spec.pos, format!("param `{name}` must be a default value or a mapping with `type`, `default`, `enum`")),
            _ => {
                let value = spec.to_json();
                p.kind = infer_type(&value);
                p.default = Some(value);
            }
        }
        out.push(p);
    }
    out
}

/// The type a default value implies.
pub fn infer_type(value: &serde_json::Value) -> ParamType {
    match value {
        serde_json::Value::Bool(_) => ParamType::Boolean,
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => ParamType::Integer,
        serde_json::Value::Number(_) => ParamType::Number,
        _ => ParamType::String,
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
