//! A YAML document as a tree of nodes that each know where they stand in the file.
//!
//! serde-saphyr parses (with its input budgets, so alias bombs and deep nesting are refused) and
//! hands every node over wrapped in [`Spanned`]; the typed loaders in `config/` walk this tree by hand
//! instead of deriving `Deserialize`, because derived code stops at the first problem and claw
//! reports every problem of every file at once.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, Pos};

/// A node of the YAML tree with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// What a node holds. Mapping entries keep the file's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's kind, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node's text if it is a scalar: strings as they are, numbers and booleans as written.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node converted to JSON (for params, trigger payloads and the like).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

fn pos_of(loc: serde_saphyr::Location) -> Pos {
    Pos {
        line: usize::try_from(loc.line()).unwrap_or(0),
        col: usize::try_from(loc.column()).unwrap_or(0),
    }
}

fn node_of(spanned: Spanned<Value>) -> Node {
    Node {
        value: spanned.value,
        pos: pos_of(spanned.referenced),
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node_of(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((node_of(key), node_of(value)));
        }
        Ok(Value::Map(entries))
    }
}

/// How many under-indented continuation lines are re-indented at most (each costs a re-parse;
/// the seed's files need a handful, a hostile file must not make validation crawl).
const MAX_INDENT_FIXES: usize = 200;

/// Parses one YAML document. An empty document is a `Null` node at 1:1.
///
/// Errors (syntax, budget exceeded, duplicate keys) come back as one diagnostic with the position
/// the parser reported.
///
/// One leniency, for files written for PyYAML (the seed's own `code-health.yaml` has one): the
/// continuation lines of a quoted string may start at column 1. YAML 1.2 wants them indented past
/// the enclosing block; PyYAML does not care. Leading white space on a continuation line is never
/// part of a quoted string's value, so indenting such a line and parsing again yields exactly the
/// value PyYAML reads. Other lines keep their positions.
pub fn parse(source: &str) -> Result<Node, Diagnostic> {
    if source.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            pos: Pos { line: 1, col: 1 },
        });
    }
    let mut text = std::borrow::Cow::Borrowed(source);
    // Each retry fixes one line.
    let max_retries = source.lines().count().min(MAX_INDENT_FIXES);
    let mut first_error = None;
    for _ in 0..=max_retries {
        match parse_once(&text) {
            Ok(node) => return Ok(node),
            Err((d, raw)) => {
                let fixed = raw
                    .contains("invalid indentation in multiline quoted scalar")
                    .then(|| indent_line(&text, d.pos.line))
                    .flatten();
                if first_error.is_none() {
                    first_error = Some(d);
                }
                match fixed {
                    Some(t) => text = std::borrow::Cow::Owned(t),
                    None => break,
                }
            }
        }
    }
    Err(first_error.unwrap_or_else(|| Diagnostic::error(Pos { line: 1, col: 1 }, "invalid YAML")))
}

/// Indents line `line` (1-based) two columns deeper than the line before it.
fn indent_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let idx = line.checked_sub(1)?;
    let target = *lines.get(idx)?;
    let prev_indent = lines[..idx]
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| l.len() - l.trim_start_matches(' ').len());
    let own = target.len() - target.trim_start_matches([' ', '\t']).len();
    if own > prev_indent {
        return None;
    }
    let mut out = String::with_capacity(text.len() + prev_indent + 2);
    for (i, l) in lines.iter().enumerate() {
        if i == idx {
            out.push_str(&" ".repeat(prev_indent + 2));
            out.push_str(l.trim_start_matches([' ', '\t']));
        } else {
            out.push_str(l);
        }
    }
    Some(out)
}

/// One parse; on error, the diagnostic and the parser's own message.
fn parse_once(source: &str) -> Result<Node, (Diagnostic, String)> {
    // YAML 1.2 scalars: only true/false are booleans (`y`, `no`, `on` stay strings, so a
    // command argument `y` is not turned into `true`), and `0755` stays the string it looks like.
    // Fields that want a boolean accept yes/no/on/off themselves, as PyYAML did.
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    };
    match serde_saphyr::from_str_with_options::<Spanned<Value>>(source, options) {
        Ok(root) => Ok(node_of(root)),
        Err(err) => {
            let pos = err.location().map_or(Pos { line: 1, col: 1 }, pos_of);
            let raw = err.to_string();
            Err((
                Diagnostic::error(pos, format!("invalid YAML: {}", clean_message(&raw))),
                raw,
            ))
        }
    }
}

/// The parser's message without its own position suffix (the diagnostic prints the position).
fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    if let Some(rest) = first.strip_prefix("budget breached: ") {
        // The parser refused to go on: say what limit, in words.
        let kind = rest.split([' ', '{']).next().unwrap_or_default();
        let number: String = rest
            .split(':')
            .nth(1)
            .map(|n| {
                n.trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect()
            })
            .unwrap_or_default();
        let what = match kind {
            "Nodes" => {
                "the document expands to too many nodes (aliases that multiply, as in a \"billion laughs\" file?)"
            }
            "Depth" => "the document is nested too deeply",
            "Aliases" | "AliasAnchorRatio" => "the document uses too many aliases",
            "Anchors" => "the document defines too many anchors",
            "ScalarBytes" | "InputBytes" => "the document is too large",
            "MergeKeys" => "the document uses too many merge keys",
            "Documents" => "the file holds too many YAML documents",
            _ => "the document exceeds the parser's limits",
        };
        return if number.is_empty() {
            format!("refused: {what}")
        } else {
            format!("refused: {what}; limit reached at {number}")
        };
    }
    let cut = match first.rfind(" at line ") {
        Some(i)
            if first[i..]
                .chars()
                .skip(9)
                .take_while(char::is_ascii_digit)
                .count()
                > 0 =>
        {
            &first[..i]
        }
        _ => first,
    };
    cut.trim_end_matches([':', ' ']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyyaml_style_continuation_lines_parse_to_the_same_value() {
        let src = "steps:\n  - name: a\n    command: \"one\ntwo\n  three\"\n";
        let node = parse(src).unwrap_or_else(|d| panic!("{d:?}"));
        let steps = node.get("steps").expect("steps");
        let Value::Seq(items) = &steps.value else {
            panic!("not a list")
        };
        assert_eq!(
            items[0].get("command").and_then(Node::as_str),
            Some("one two three")
        );
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("invalid");
        assert!(err.pos.line >= 1);
        assert!(err.message.starts_with("invalid YAML: "), "{}", err.message);
    }
}
