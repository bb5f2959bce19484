//! Problems found in input files, each with its place, rendered like a compiler's:
//!
//! ```text
//! error: unknown key `neds` in step `build`
//!   --> workflows/deploy.yaml:7:5
//!    |
//!  7 |     neds: [test]
//!    |     ^
//!    = help: did you mean `needs`?
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Source lines longer than this many characters are cut around the column.
const MAX_SHOWN: usize = 120;

/// A 1-based line and column. Line 0 means "no position known".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: Option<PathBuf>,
    pub pos: Pos,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            path: None,
            pos,
            message: message.into(),
            help: None,
        }
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    #[must_use]
    pub fn in_file(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    /// `path:line:col: message` (the first line of the full rendering).
    pub fn headline(&self) -> String {
        let path = self
            .path
            .as_deref()
            .map_or_else(|| "<input>".to_owned(), |p| p.display().to_string());
        if self.pos.line == 0 {
            format!("{path}: {}", self.message)
        } else {
            format!(
                "{path}:{}:{}: {}",
                self.pos.line, self.pos.col, self.message
            )
        }
    }

    /// The full rendering: headline, the source line with a caret under the column, and the help.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = format!("error: {}", visible(&self.headline()));
        out.push('\n');
        if let Some(line) = source
            .filter(|_| self.pos.line > 0)
            .and_then(|s| s.lines().nth(self.pos.line - 1))
        {
            let number = self.pos.line.to_string();
            let gutter = " ".repeat(number.len());
            let line = line.replace('\t', " ");
            // Very long lines (minified or generated input) are shown as a window around the column.
            let chars: Vec<char> = line.chars().collect();
            let col = self.pos.col.saturating_sub(1).min(chars.len());
            let (start, prefix) = if chars.len() > MAX_SHOWN && col > MAX_SHOWN / 2 {
                (col - MAX_SHOWN / 2, "…")
            } else {
                (0, "")
            };
            let end = (start + MAX_SHOWN).min(chars.len());
            let suffix = if end < chars.len() { "…" } else { "" };
            let shown: String = chars[start..end].iter().map(|c| visible_char(*c)).collect();
            // The caret goes under the column, counted in characters as shown.
            let before: usize = chars[start..col]
                .iter()
                .map(|c| visible_char(*c).chars().count())
                .sum();
            let caret_pad = " ".repeat(before + prefix.chars().count());
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{number} | {prefix}{shown}{suffix}");
            let _ = writeln!(out, "{gutter} | {caret_pad}^");
            if let Some(help) = &self.help {
                let _ = writeln!(out, "{gutter} = help: {}", visible(help));
            }
        } else if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {}", visible(help));
        }
        out
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely misspelling.
pub fn suggest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, c)| d > 0 && (d <= 2 || d * 3 <= c.len().max(word.len())))
        .filter(|&(d, c)| d < c.len().max(word.len()))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" when a near candidate exists.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// Everything wrong with one file.
#[derive(Debug, Clone)]
pub struct FileErrors {
    pub path: PathBuf,
    /// The file's text, when it could be read (for rendering source lines).
    pub source: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileErrors {
    pub fn single(path: &Path, source: Option<String>, diagnostic: Diagnostic) -> Self {
        Self {
            path: path.to_path_buf(),
            source,
            diagnostics: vec![diagnostic.in_file(path)],
        }
    }

    /// Every diagnostic rendered with its source line.
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(self.source.as_deref()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A character of the input as a message shows it: one that would change how the message reads
/// (a control, a bidirectional override, an invisible one) is written as its `\u{…}` escape.
fn visible_char(c: char) -> String {
    if c != '\n' && crate::names::is_misleading(c) {
        c.escape_unicode().to_string()
    } else {
        c.to_string()
    }
}

/// Each character of `text` as `visible_char` shows it (line breaks kept).
pub fn visible(text: &str) -> String {
    if text
        .chars()
        .any(|c| c != '\n' && crate::names::is_misleading(c))
    {
        text.chars().map(visible_char).collect()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_column() {
        let d = Diagnostic::error(Pos { line: 2, col: 5 }, "unknown key `neds`")
            .with_help("did you mean `needs`?")
            .in_file(Path::new("wf.yaml"));
        let src = "steps:\n    neds: [a]\n";
        assert_eq!(
            d.render(Some(src)),
            "error: wf.yaml:2:5: unknown key `neds`\n  |\n2 |     neds: [a]\n  |     ^\n  = help: did you mean `needs`?\n"
        );
    }

    #[test]
    fn suggestions_are_close_only() {
        let keys = ["needs", "name", "command", "timeout"];
        assert_eq!(suggest("neds", keys), Some("needs"));
        assert_eq!(suggest("comand", keys), Some("command"));
        assert_eq!(suggest("zzzzzz", keys), None);
        assert_eq!(suggest("needs", keys), None);
    }
}
