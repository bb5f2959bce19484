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

/// The type names a spec's `type:` accepts, with the seed's short forms.
pub fn parse_type(text: &str) -> Option<ParamType> {
    Some(match text {
        "string" | "str" => ParamType::String,
        "integer" | "int" => ParamType::Integer,
        "number" | "float" => ParamType::Number,
        "boolean" | "bool" => ParamType::Boolean,
        _ => return None,
    })
}

/// The type of a default given without `type:`.
fn infer_type(value: &serde_json::Value) -> ParamType {
    match value {
        serde_json::Value::Bool(_) => ParamType::Boolean,
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => ParamType::Integer,
        serde_json::Value::Number(_) => ParamType::Number,
        _ => ParamType::String,
    }
}

/// Loads a mapping of typed inputs: a workflow's `params:` (`key` `params`, `noun` `param`), a
/// skill's `args:` (`args`, `argument`). Each entry is `name: {type, default, enum, required,
/// description}`, or `name: <default>` (its type inferred), or `name:` (a required string).
/// Problems go to `r`, worded with `noun`.
pub fn load(r: &mut Reader, node: &Node, key: &str, noun: &str) -> Vec<ParamSpec> {
    const FIELDS: &[&str] = &["type", "default", "enum", "required", "description"];
    const TYPES: [&str; 4] = ["string", "integer", "number", "boolean"];
    let mut out = Vec::new();
    for (name, spec) in r.entries(node, &[], &format!("`{key}`")) {
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
                let fields = r.entries(spec, FIELDS, &format!("{noun} `{name}`"));
                // `type` first: it decides how `default` and `enum` are checked.
                let mut kind_set = false;
                if let Some((_, v)) = fields.iter().find(|(k, _)| *k == "type") {
                    let t = r.string(v, "type").unwrap_or_default();
                    match parse_type(&t) {
                        Some(k) => p.kind = k,
                        None => r.err_help(
                            v.pos,
                            format!(
                                "unknown {noun} type `{t}` (expected string, integer, number or boolean)"
                            ),
                            did_you_mean(&t, TYPES),
                        ),
                    }
                    kind_set = true;
                }
                let mut required = None;
                for (k, v) in fields {
                    match k {
                        "default" => {
                            let value = v.to_json();
                            if !kind_set {
                                p.kind = infer_type(&value);
                            }
                            if !value.is_null() && !p.kind.accepts(&value) {
                                r.err(
                                    v.pos,
                                    format!(
                                        "default of `{name}` is not of type {}",
                                        p.kind.as_str()
                                    ),
                                );
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
                                        r.err(
                                            item.pos,
                                            format!(
                                                "choice for `{name}` is not of type {}",
                                                p.kind.as_str()
                                            ),
                                        );
                                    }
                                    p.choices.push(value);
                                }
                            } else {
                                r.err(v.pos, format!("`enum` must be a list, found {}", v.kind()));
                            }
                        }
                        "required" => required = r.boolean(v, "required"),
                        "description" => {
                            p.description = r.string(v, "description").unwrap_or_default();
                        }
                        _ => {}
                    }
                }
                p.required = required.unwrap_or(p.default.is_none());
                if let Some(default) = &p.default
                    && !p.choices.is_empty()
                    && !p.choices.contains(default)
                {
                    r.err(
                        spec.pos,
                        format!("default of `{name}` is not one of its `enum` choices"),
                    );
                }
            }
            Value::Null => p.required = true,
            Value::Seq(_) => r.err(
                spec.pos,
                format!(
                    "{noun} `{name}` must be a default value or a mapping with `type`, `default`, `enum`"
                ),
            ),
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

    fn load_yaml(yaml: &str, key: &str, noun: &str) -> (Vec<ParamSpec>, Vec<String>) {
        let root = crate::yaml::node::parse(yaml).unwrap();
        let mut r = Reader::new();
        let specs = load(&mut r, &root, key, noun);
        (
            specs,
            r.diags
                .iter()
                .map(crate::diagnostic::Diagnostic::headline)
                .collect(),
        )
    }

    #[test]
    fn specs_load_with_types_defaults_and_choices() {
        let (specs, problems) = load_yaml(
            "env: {type: string, enum: [dev, prod], default: dev}\ncount: 3\nhost:\nratio: {default: 0.5, description: how much}\n",
            "params",
            "param",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let kinds: Vec<(&str, ParamType, bool)> = specs
            .iter()
            .map(|p| (p.name.as_str(), p.kind, p.required))
            .collect();
        assert_eq!(
            kinds,
            [
                ("env", ParamType::String, false),
                ("count", ParamType::Integer, false),
                ("host", ParamType::String, true),
                ("ratio", ParamType::Number, false),
            ]
        );
        assert_eq!(specs[0].choices.len(), 2);
        assert_eq!(specs[3].description, "how much");
    }

    #[test]
    fn problems_are_worded_for_the_file() {
        let (_, problems) = load_yaml(
            "a: {type: strin}\nb: {typ: string}\nc: {type: integer, default: x}\nd: [1]\n",
            "args",
            "argument",
        );
        assert_eq!(
            problems,
            [
                "<input>:1:11: unknown argument type `strin` (expected string, integer, number or boolean)",
                "<input>:2:5: unknown key `typ` in argument `b`",
                "<input>:3:29: default of `c` is not of type integer",
                "<input>:4:4: argument `d` must be a default value or a mapping with `type`, `default`, `enum`",
            ]
        );
    }
}
