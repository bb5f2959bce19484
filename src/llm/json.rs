//! Structured output: a reply turned into JSON and checked against a JSON Schema.
//!
//! [`repair`] fixes what models commonly get wrong: a Markdown fence around the JSON, prose
//! before or after it, trailing commas, and a reply cut off inside the value (open strings,
//! arrays and objects are closed). [`Schema`] wraps a compiled `jsonschema` validator; its
//! errors name the place in the value (`/items/0/name: ...`), which is what a re-ask sends back.

use serde_json::Value;

/// A compiled JSON Schema.
pub struct Schema {
    pub source: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// Compiles a schema; an `Err` says why it is not a valid JSON Schema.
    pub fn new(source: Value) -> Result<Self, String> {
        if !source.is_object() && !source.is_boolean() {
            return Err("a JSON Schema must be an object".to_owned());
        }
        jsonschema::meta::validate(&source).map_err(|e| schema_error(&e))?;
        let validator = jsonschema::validator_for(&source).map_err(|e| schema_error(&e))?;
        Ok(Self { source, validator })
    }

    /// Every way `value` breaks the schema (empty: it is valid).
    pub fn errors(&self, value: &Value) -> Vec<String> {
        self.validator
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect()
    }
}

fn schema_error(e: &jsonschema::ValidationError<'_>) -> String {
    let at = e.schema_path().to_string();
    if at.is_empty() {
        format!("not a valid JSON Schema: {e}")
    } else {
        format!("not a valid JSON Schema (at {at}): {e}")
    }
}

/// The JSON value in a reply, repaired if need be; `Err` with the parser's complaint about the
/// best candidate.
pub fn repair(reply: &str) -> Result<Value, String> {
    let text = unfence(reply.trim());
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let start = text.find(['{', '[']).unwrap_or(0);
    let candidate = &text[start..];
    let cleaned = close_open(&drop_trailing_commas(candidate));
    match serde_json::from_str::<Value>(&cleaned) {
        Ok(v) => Ok(v),
        Err(_) => {
            // Prose after the value: parse the first value and ignore the rest.
            let mut de = serde_json::Deserializer::from_str(&cleaned).into_iter::<Value>();
            match de.next() {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("the reply holds no JSON".to_owned()),
            }
        }
    }
}

/// The inside of a ```` ``` ```` fence, if the text has one.
fn unfence(text: &str) -> &str {
    let Some(open) = text.find("```") else {
        return text;
    };
    let after = &text[open + 3..];
    // Skip the info string (`json`).
    let body = after.find('\n').map_or(after, |nl| &after[nl + 1..]);
    match body.find("```") {
        Some(close) => body[..close].trim(),
        None => body.trim(),
    }
}

/// Removes commas that stand right before `}` or `]` (outside strings).
fn drop_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if c == '"' {
            in_str = true;
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}' | ']') | None) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Closes what a cut-off reply left open: a string, then arrays and objects innermost first (a
/// dangling `"key":` or `,` is dropped first).
fn close_open(text: &str) -> String {
    let mut stack = Vec::new();
    let mut in_str = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    if stack.is_empty() && !in_str {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    if escaped {
        out.pop();
    }
    if in_str {
        out.push('"');
    }
    loop {
        let t = out.trim_end();
        if let Some(s) = t.strip_suffix(',').or_else(|| t.strip_suffix(':')) {
            let s = s.to_owned();
            // `"key":` with no value: drop the key too.
            if t.ends_with(':') {
                let s = s.trim_end();
                if let Some(q) = s.strip_suffix('"')
                    && let Some(open) = q.rfind('"')
                {
                    out = q[..open].to_owned();
                    continue;
                }
            }
            out = s;
            continue;
        }
        break;
    }
    // A key without its colon in an object (`{"a": 1, "b`) cannot be completed: drop it.
    if stack.last() == Some(&'}') {
        let t = out.trim_end();
        if t.ends_with('"') && !t.ends_with(":\"") {
            let before = t[..t.len() - 1].rfind('"').map(|i| t[..i].trim_end());
            if let Some(b) = before
                && (b.ends_with(',') || b.ends_with('{'))
            {
                out = b.trim_end_matches(',').to_owned();
            }
        }
    }
    out = drop_trailing_commas(&out);
    while let Some(c) = stack.pop() {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repairs_what_models_get_wrong() {
        assert_eq!(repair("{\"a\": 1}").expect("plain"), json!({"a": 1}));
        assert_eq!(
            repair("Here it is:\n```json\n{\"a\": [1, 2,],}\n```\nDone.").expect("fenced"),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            repair("{\"a\": [1, 2], \"b\": \"cut").expect("cut string"),
            json!({"a": [1, 2], "b": "cut"})
        );
        assert_eq!(
            repair("{\"a\": {\"b\": [1, 2").expect("cut nesting"),
            json!({"a": {"b": [1, 2]}})
        );
        assert_eq!(
            repair("{\"a\": 1, \"b\":").expect("dangling key"),
            json!({"a": 1})
        );
        assert_eq!(
            repair("Sure! {\"ok\": true} hope that helps").expect("prose"),
            json!({"ok": true})
        );
        assert!(repair("no json at all").is_err());
    }

    #[test]
    fn schema_errors_name_the_place() {
        let s = Schema::new(json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}
        }))
        .expect("valid schema");
        assert!(s.errors(&json!({"name": "x", "n": 1})).is_empty());
        let e = s.errors(&json!({"n": "one"}));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("/n: ")), "{e:?}");
        let bad = Schema::new(json!({"type": "strin"})).expect_err("invalid schema");
        assert!(bad.contains("not a valid JSON Schema"), "{bad}");
    }
}
