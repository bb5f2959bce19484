//! The names an expression reads: `params.who`, `steps['count-bytes'].outputs.n`, `trigger.hook`,
//! so that `claw workflow validate` can check each against what the workflow declares.
//!
//! A small scanner over the expression's source, not an evaluation: string literals are skipped,
//! filter names (`| trim`), test names (`is defined`), function names (`range(3)`), keyword
//! arguments and keywords are not names of the context. A subscript that is not a string literal
//! (`steps[name]`) ends the path: what follows is only known at run time.

use super::{is_name_byte, scan_hyphen_name, skip_string};

/// One name of the context an expression reads, with the constant path after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `params`, `steps`, `step` (a typo), …
    pub root: String,
    /// The constant fields after the root: `["use", "stdout"]` for `steps.use.stdout`.
    pub path: Vec<String>,
    /// Byte offset of the root in the expression's source.
    pub offset: usize,
}

const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None",
];

/// Every context name `source` (the inside of one `${{ }}`, or a bare `if:`) reads.
pub fn references(source: &str) -> Vec<Reference> {
    let b = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // The byte of the last token when it was punctuation ('.' and '|' matter), else None.
    let mut prev_punct: Option<u8> = None;
    // After `is` (and `is not`), the next word is a test name.
    let mut test_next = false;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            i = skip_string(b, i).unwrap_or(b.len());
            (prev_punct, test_next) = (None, false);
            continue;
        }
        if c.is_ascii_digit() {
            while b.get(i).is_some_and(|&c| is_name_byte(c) || c == b'.') {
                i += 1;
            }
            (prev_punct, test_next) = (None, false);
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == b'_') {
            (prev_punct, test_next) = (Some(c), false);
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i).is_some_and(|&c| is_name_byte(c)) {
            i += 1;
        }
        let word = &source[start..i];
        if KEYWORDS.contains(&word) {
            test_next = word == "is" || (word == "not" && test_next);
            prev_punct = None;
            continue;
        }
        let next = next_significant(b, i);
        let call = matches!(next, Some((_, b'(')));
        let keyword_arg = matches!(next, Some((j, b'=')) if b.get(j + 1) != Some(&b'='));
        let named = matches!(prev_punct, Some(b'.' | b'|')) || test_next || call || keyword_arg;
        (prev_punct, test_next) = (None, false);
        if named {
            continue;
        }
        let (path, end) = path_after(
            source,
            i,
            word == "steps" || word == "params" || word == "memory",
        );
        out.push(Reference {
            root: word.to_owned(),
            path,
            offset: start,
        });
        i = end;
    }
    out
}

fn next_significant(b: &[u8], mut i: usize) -> Option<(usize, u8)> {
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_whitespace() {
            return Some((i, c));
        }
        i += 1;
    }
    None
}

/// The constant fields after a root ending at `i`, and where they end. `hyphens`: the first
/// field may be a hyphenated name (`steps.count-bytes`), as claw reads it.
fn path_after(source: &str, mut i: usize, hyphens: bool) -> (Vec<String>, usize) {
    let b = source.as_bytes();
    let mut path = Vec::new();
    loop {
        match b.get(i) {
            Some(b'.') => {
                let start = i + 1;
                let end = if hyphens && path.is_empty() {
                    scan_hyphen_name(b, start)
                } else {
                    let mut k = start;
                    while b.get(k).is_some_and(|&c| is_name_byte(c)) {
                        k += 1;
                    }
                    k
                };
                if end == start {
                    return (path, i);
                }
                path.push(source[start..end].to_owned());
                i = end;
            }
            Some(b'[') => {
                let q = i + 1;
                let Some(&quote) = b.get(q).filter(|&&c| c == b'\'' || c == b'"') else {
                    return (path, i);
                };
                let Some(end) = skip_string(b, q) else {
                    return (path, i);
                };
                if b.get(end) != Some(&b']') {
                    return (path, i);
                }
                let inner = &source[q + 1..end - 1];
                if inner.contains('\\') || inner.contains(quote as char) {
                    return (path, end + 1);
                }
                path.push(inner.to_owned());
                i = end + 1;
            }
            _ => return (path, i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(src: &str) -> Vec<(String, Vec<String>)> {
        references(src)
            .into_iter()
            .map(|r| (r.root, r.path))
            .collect()
    }

    fn r(root: &str, path: &[&str]) -> (String, Vec<String>) {
        (
            root.to_owned(),
            path.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    #[test]
    fn paths_with_dots_and_subscripts() {
        assert_eq!(roots("params.who"), vec![r("params", &["who"])]);
        assert_eq!(
            roots("steps['count-bytes'].stdout | trim"),
            vec![r("steps", &["count-bytes", "stdout"])]
        );
        assert_eq!(
            roots("steps.count-bytes.outputs.n"),
            vec![r("steps", &["count-bytes", "outputs", "n"])]
        );
        assert_eq!(
            roots("step.use.stdout"),
            vec![r("step", &["use", "stdout"])]
        );
        assert_eq!(
            roots("steps[name].x"),
            vec![r("steps", &[]), r("name", &[])]
        );
    }

    #[test]
    fn filters_tests_functions_keywords_and_strings_are_not_names() {
        assert_eq!(
            roots("params.a | default('x') ~ 'steps.y' if run.dry_run is defined else none"),
            vec![r("params", &["a"]), r("run", &["dry_run"])]
        );
        assert_eq!(roots("range(3) | join(',')"), vec![]);
        assert_eq!(
            roots("x is not none and not y"),
            vec![r("x", &[]), r("y", &[])]
        );
        assert_eq!(
            roots("steps.a.outputs.get('k', 1) | tojson(indent=2)"),
            vec![r("steps", &["a", "outputs", "get"])]
        );
        assert_eq!(roots("a.b == 1"), vec![r("a", &["b"])]);
    }

    #[test]
    fn offsets_point_at_the_root() {
        let src = "  params.x ~ trigger.hook";
        let refs = references(src);
        assert_eq!(&src[refs[0].offset..refs[0].offset + 6], "params");
        assert_eq!(&src[refs[1].offset..refs[1].offset + 7], "trigger");
    }
}
