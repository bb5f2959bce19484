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
        let parsed = match &node.value {
            Value::Int(i) if *i > 0 => Ok(Duration::from_secs(i.unsigned_abs())),
            Value::Int(_) => Err("must be greater than zero".to_owned()),
            Value::Float(f) if *f > 0.0 => {
                Duration::try_from_secs_f64(*f).map_err(|_| "is out of range".to_owned())
            }
            Value::Str(s) => duration::parse(s).and_then(|d| {
                if d.is_zero() {
                    Err("must be greater than zero".to_owned())
                } else {
                    Ok(d)
                }
            }),
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
