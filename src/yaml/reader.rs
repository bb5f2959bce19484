//! [`Reader`]: typed access to a spanned YAML tree that collects every problem instead of
//! stopping at the first, and [`read_file`], the one way a YAML file is read from disk (size
//! limit, UTF-8 check with the position of the first bad byte, parse).

use std::path::Path;
use std::time::Duration;

use super::node::{self, Node, Value};
use crate::diagnostic::{Diagnostic, FileErrors, Pos, did_you_mean};
use crate::time::duration;

/// Collects diagnostics while a loader walks a tree.
#[derive(Debug, Default)]
pub struct Reader {
    pub diags: Vec<Diagnostic>,
}

impl Reader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(pos, message));
    }

    pub fn err_help(&mut self, pos: Pos, message: impl Into<String>, help: Option<String>) {
        self.diags
            .push(Diagnostic::error(pos, message).with_help_opt(help));
    }

    /// The entries of a mapping node; reports keys outside `allowed` (with a suggestion). An
    /// empty `allowed` accepts every key.
    pub fn entries<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&str],
        what: &str,
    ) -> Vec<(&'n str, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            self.err(
                node.pos,
                format!("{what} must be a mapping, found {}", node.kind()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let Some(k) = key.as_str() else {
                self.err(
                    key.pos,
                    format!("keys in {what} must be strings, found {}", key.kind()),
                );
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&k) {
                self.err_help(
                    key.pos,
                    format!("unknown key `{k}` in {what}"),
                    did_you_mean(k, allowed.iter().copied()),
                );
                continue;
            }
            out.push((k, value));
        }
        out
    }

    /// A scalar as text (numbers and booleans as written).
    pub fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => node.scalar_text(),
            _ => {
                self.err(
                    node.pos,
                    format!("`{field}` must be a string, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// `true`/`false`, and the YAML 1.1 spellings the seed's PyYAML read as booleans.
    pub fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if matches!(s.to_ascii_lowercase().as_str(), "yes" | "on") => Some(true),
            Value::Str(s) if matches!(s.to_ascii_lowercase().as_str(), "no" | "off") => Some(false),
            _ => {
                self.err(
                    node.pos,
                    format!("`{field}` must be true or false, found {}", node.kind()),
                );
                None
            }
        }
    }

    pub fn positive_int(&mut self, node: &Node, field: &str) -> Option<u32> {
        match node.value {
            Value::Int(i) if i >= 1 => u32::try_from(i).ok(),
            _ => {
                self.err(
                    node.pos,
                    format!("`{field}` must be a whole number of at least 1"),
                );
                None
            }
        }
    }

    /// A duration greater than zero: seconds (the seed's form) or `30s`, `5m`, `2h30m`, `1d`.
    pub fn duration(&mut self, node: &Node, field: &str) -> Option<Duration> {
        self.duration_at_least(node, field, false)
    }

    /// A duration that may be zero (`0`, `0s`: none): a jitter, a grace period, an age.
    pub fn duration_or_zero(&mut self, node: &Node, field: &str) -> Option<Duration> {
        self.duration_at_least(node, field, true)
    }

    fn duration_at_least(&mut self, node: &Node, field: &str, zero: bool) -> Option<Duration> {
        let not_zero = |d: Duration| {
            if d.is_zero() && !zero {
                Err("must be greater than zero".to_owned())
            } else {
                Ok(d)
            }
        };
        let parsed = match &node.value {
            Value::Int(i) if *i >= 0 => not_zero(Duration::from_secs(i.unsigned_abs())),
            Value::Float(f) if *f >= 0.0 => Duration::try_from_secs_f64(*f)
                .map_err(|_| "is out of range".to_owned())
                .and_then(not_zero),
            Value::Int(_) | Value::Float(_) if zero => Err("must not be negative".to_owned()),
            Value::Int(_) | Value::Float(_) => Err("must be greater than zero".to_owned()),
            Value::Str(s) => duration::parse(s).and_then(not_zero),
            _ => Err(format!("found {}", node.kind())),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(why) => {
                let hint = if why.contains("expected") {
                    String::new()
                } else {
                    " (expected seconds or e.g. 30s, 5m, 1h, 2h30m)".to_owned()
                };
                self.err(
                    node.pos,
                    format!("invalid duration for `{field}`: {why}{hint}"),
                );
                None
            }
        }
    }

    /// A whole number in `range`.
    pub fn whole_number(
        &mut self,
        node: &Node,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        match node.value {
            Value::Int(i) if range.contains(&i) => Some(i),
            _ => {
                let bounds = if *range.end() == i64::MAX {
                    format!("of at least {}", range.start())
                } else {
                    format!("from {} to {}", range.start(), range.end())
                };
                self.err(
                    node.pos,
                    format!("`{field}` must be a whole number {bounds}"),
                );
                None
            }
        }
    }

    /// One of `names`; anything else is reported with the list and a suggestion.
    pub fn choice(&mut self, node: &Node, field: &str, names: &[&str]) -> Option<String> {
        let s = self.string(node, field)?;
        if names.contains(&s.as_str()) {
            return Some(s);
        }
        self.err_help(
            node.pos,
            format!(
                "unknown `{field}` value `{s}` (expected {})",
                names.join(", ")
            ),
            did_you_mean(&s, names.iter().copied()),
        );
        None
    }

    /// A string, or a list of strings (each with its position); null is an empty list. Numbers
    /// and booleans count as text, as in [`Reader::string`].
    pub fn string_list(&mut self, node: &Node, field: &str) -> Vec<(String, Pos)> {
        match &node.value {
            Value::Null => Vec::new(),
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, field).map(|s| (s, i.pos)))
                .collect(),
            Value::Map(_) => {
                self.err(
                    node.pos,
                    format!(
                        "`{field}` must be a string or a list of strings, found {}",
                        node.kind()
                    ),
                );
                Vec::new()
            }
            _ => self
                .string(node, field)
                .map(|s| vec![(s, node.pos)])
                .unwrap_or_default(),
        }
    }

    /// A mapping of names to scalars, as text (a null value is the empty string); a null
    /// mapping is empty.
    pub fn string_map(&mut self, node: &Node, field: &str) -> Vec<(String, String)> {
        if node.value == Value::Null {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (k, v) in self.entries(node, &[], &format!("`{field}`")) {
            let value = match v.value {
                Value::Null => Some(String::new()),
                _ => self.string(v, &format!("{field}.{k}")),
            };
            if let Some(value) = value {
                out.push((k.to_owned(), value));
            }
        }
        out
    }

    /// The diagnostics collected, sorted by position without repeats, placed in `path`; `Ok`
    /// when there are none.
    pub fn finish(self, path: &Path, source: String) -> Result<(), FileErrors> {
        if self.diags.is_empty() {
            return Ok(());
        }
        let mut diagnostics: Vec<Diagnostic> =
            self.diags.into_iter().map(|d| d.in_file(path)).collect();
        diagnostics.sort_by_key(|d| d.pos);
        diagnostics.dedup();
        Err(FileErrors {
            path: path.to_path_buf(),
            source: Some(source),
            diagnostics,
        })
    }

    /// A name, or a list of names (each with its position).
    pub fn name_list(&mut self, node: &Node, field: &str, what: &str) -> Vec<(String, Pos)> {
        match &node.value {
            Value::Str(s) => vec![(s.clone(), node.pos)],
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, field).map(|s| (s, i.pos)))
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.err(node.pos, format!("`{field}` must be {what}"));
                Vec::new()
            }
        }
    }
}

/// A YAML file read and parsed: its text (for rendering diagnostics) and its tree.
#[derive(Debug)]
pub struct Source {
    pub text: String,
    pub root: Node,
}

/// Reads and parses a YAML file of at most `max_bytes`; `what` names the kind of file in
/// messages (`workflow file`). Every failure is a [`FileErrors`] naming the file, with the
/// position where there is one.
pub fn read_file(path: &Path, max_bytes: u64, what: &str) -> Result<Source, FileErrors> {
    let text = read_text(path, max_bytes, what)?;
    parse(path, text)
}

/// Parses text already read (a stored definition, a test fixture) as if it were `path`.
pub fn parse(path: &Path, text: String) -> Result<Source, FileErrors> {
    match node::parse(&text) {
        Ok(root) => Ok(Source { text, root }),
        Err(d) => Err(FileErrors::single(path, Some(text), d)),
    }
}

/// Reads a text file of at most `max_bytes` that must be UTF-8.
pub fn read_text(path: &Path, max_bytes: u64, what: &str) -> Result<String, FileErrors> {
    let no_pos = Pos::default();
    let fail = |message: String| FileErrors::single(path, None, Diagnostic::error(no_pos, message));
    let meta = std::fs::metadata(path).map_err(|e| fail(io_message(&e, "read")))?;
    if meta.is_dir() {
        return Err(fail(format!("is a directory, not a {what}")));
    }
    if meta.len() > max_bytes {
        return Err(fail(format!(
            "file is {} bytes; {what}s are limited to {max_bytes} bytes",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(io_message(&e, "read")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        FileErrors::single(
            path,
            None,
            Diagnostic::error(
                Pos { line, col },
                format!("file is not valid UTF-8 ({what}s must be UTF-8 text)"),
            ),
        )
    })
}

/// A short reason for an I/O error on a file the user named.
pub fn io_message(e: &std::io::Error, verb: &str) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => format!("cannot {verb}: permission denied"),
        _ => format!("cannot {verb}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(yaml: &str) -> Node {
        let root = node::parse(yaml).unwrap();
        root.get("v").cloned().unwrap()
    }

    fn messages(r: &Reader) -> Vec<String> {
        r.diags.iter().map(|d| d.message.clone()).collect()
    }

    #[test]
    fn durations_with_and_without_zero() {
        let mut r = Reader::new();
        assert_eq!(
            r.duration(&field("v: 90"), "t"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            r.duration(&field("v: 2m"), "t"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(r.duration(&field("v: 0"), "t"), None);
        assert_eq!(
            r.duration_or_zero(&field("v: 0s"), "t"),
            Some(Duration::ZERO)
        );
        assert_eq!(r.duration_or_zero(&field("v: -1"), "t"), None);
        assert_eq!(r.duration_or_zero(&field("v: [1]"), "t"), None);
        assert_eq!(
            messages(&r),
            [
                "invalid duration for `t`: must be greater than zero (expected seconds or e.g. 30s, 5m, 1h, 2h30m)",
                "invalid duration for `t`: must not be negative (expected seconds or e.g. 30s, 5m, 1h, 2h30m)",
                "invalid duration for `t`: found a list (expected seconds or e.g. 30s, 5m, 1h, 2h30m)",
            ]
        );
    }

    #[test]
    fn numbers_choices_lists_and_maps() {
        let mut r = Reader::new();
        assert_eq!(r.whole_number(&field("v: 3"), "n", 0..=10), Some(3));
        assert_eq!(r.whole_number(&field("v: 11"), "n", 0..=10), None);
        assert_eq!(r.whole_number(&field("v: x"), "n", 1..=i64::MAX), None);
        assert_eq!(
            r.choice(&field("v: all"), "c", &["none", "all"]),
            Some("all".into())
        );
        assert_eq!(r.choice(&field("v: nnoe"), "c", &["none", "all"]), None);
        let list = r.string_list(&field("v: [a, 2]"), "l");
        assert_eq!(
            list.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            ["a", "2"]
        );
        assert_eq!(r.string_list(&field("v: one"), "l").len(), 1);
        assert!(r.string_list(&field("v:"), "l").is_empty());
        assert!(r.string_list(&field("v: {a: 1}"), "l").is_empty());
        assert_eq!(
            r.string_map(&field("v: {A: 1, B: }"), "env"),
            [
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), String::new())
            ]
        );
        assert!(r.string_map(&field("v:"), "env").is_empty());
        assert_eq!(
            messages(&r),
            [
                "`n` must be a whole number from 0 to 10",
                "`n` must be a whole number of at least 1",
                "unknown `c` value `nnoe` (expected none, all)",
                "`l` must be a string or a list of strings, found a mapping",
            ]
        );
        assert_eq!(r.diags[2].help.as_deref(), Some("did you mean `none`?"));
    }

    #[test]
    fn finish_sorts_and_places_the_diagnostics() {
        let mut r = Reader::new();
        r.err(Pos { line: 3, col: 1 }, "b");
        r.err(Pos { line: 1, col: 1 }, "a");
        r.err(Pos { line: 1, col: 1 }, "a");
        let e = r.finish(Path::new("f.yaml"), "x".into()).unwrap_err();
        let heads: Vec<String> = e.diagnostics.iter().map(Diagnostic::headline).collect();
        assert_eq!(heads, ["f.yaml:1:1: a", "f.yaml:3:1: b"]);
        assert!(
            Reader::new()
                .finish(Path::new("f.yaml"), String::new())
                .is_ok()
        );
    }
}
