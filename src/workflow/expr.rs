//! Workflow expressions: `${{ … }}` templates evaluated with minijinja.
//!
//! # Syntax
//!
//! Workflow strings may contain expressions written `${{ … }}` (GitHub-Actions
//! style). Only the three-character opener `${{` starts an expression: plain
//! `{{ … }}` is never touched, so Go templates in homelab commands such as
//! `docker ps --format '{{.Names}}'` pass through unchanged. The matching `}}`
//! is found while skipping quoted string literals (`'…'` and `"…"`, with
//! backslash escapes) and balanced `{ … }` pairs, so `${{ "}}" }}` and
//! `${{ {'a': {'b': 1}} }}` work. An unterminated `${{` is an error that
//! carries its byte offset.
//!
//! The inner text is a minijinja expression evaluated against a context value
//! (a map with `params`, `env`, `steps`, `run`, `trigger`, …):
//!
//! * Undefined values use [`UndefinedBehavior::SemiStrict`]: a missing value
//!   may be tested (`steps.x is defined`, or used as a condition, where it is
//!   false), but rendering one is an error that names the expression, e.g.
//!   "`${{ steps.build.outputs.vesion }}` is undefined".
//! * Step and parameter names often contain hyphens (`git-pull`). Before
//!   compiling, `steps.<name>` and `params.<name>` whose name contains a hyphen
//!   are rewritten to `steps["<name>"]` (resp. `params[…]`); the name is
//!   `[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*`, taken greedily. Consequently
//!   **subtraction needs spaces**: write `params.a - 1`, not `params.a-1`.
//! * Evaluation is bounded: fuel (instruction budget), a small recursion limit,
//!   a maximum expression length and a maximum number of operators (minijinja
//!   compiles deeply nested expressions recursively, so an expression such as
//!   5000 chained `-` would otherwise overflow the stack). Note that fuel
//!   counts VM instructions, not work done inside builtin filters; minijinja's
//!   own limits (`range` ≤ 100 000 items, repetition ≤ 10⁸ items) bound those.
//! * A trailing `| raw` (`${{ params.cmd | raw }}`) is not a filter: it is
//!   stripped before compiling and only switches off shell escaping for that
//!   occurrence (see below). Everywhere else it is accepted and ignored.
//!
//! Values become text as follows: strings as they are, `none` as the empty
//! string, booleans as `true`/`false`, numbers as minijinja prints them, and
//! sequences and maps as compact JSON.
//!
//! # Shell rendering
//!
//! [`Evaluator::render_shell`] substitutes values into a command for POSIX
//! `sh -c` (dash and bash are both considered). It tracks the shell quoting
//! state over the *literal* text of the template with a small stack machine
//! (the values never change the state) and escapes every value for the
//! context it lands in, so that the shell sees exactly the value as data:
//!
//! | context | emitted |
//! |---|---|
//! | unquoted word (also in `$( … )`, `` ` … ` ``, `<( … )`) | `'…'` with `'` as `'\''` (empty: `''`) |
//! | `"…"` | `\`, `"`, `$`, `` ` `` backslash-escaped (`""` first if it follows `$name`) |
//! | `'…'` | `'` as `'\''` |
//! | `# comment` | as is; a newline is an error |
//! | here-document, quoted delimiter (`'EOF'`, `"EOF"`, `\EOF`) | as is |
//! | here-document, plain delimiter | `\`, `$`, `` ` `` escaped |
//! | inside backquotes | additionally `\`, `` ` ``, `$` escaped once more |
//!
//! In here-documents, a value that would form a line equal to the delimiter
//! (ending the body early) is an error, and so is a line starting with a tab
//! under `<<-`. The state machine follows backslash escapes and line
//! continuations (`\` + newline, removed before tokenizing), `$( … )`,
//! backquotes and `${ … }` nested in double quotes, `$(( … ))`, comments,
//! here-documents (several per line, `<<-`), redirections and the words of
//! each simple command.
//!
//! Some places re-interpret a value however it is quoted. There only inert
//! values are accepted:
//!
//! * only integers (no leading zeros): `$(( … ))`, `(( … ))`, `let`,
//!   `declare -i`, a bash array subscript `name[…]=`;
//! * only `[A-Za-z0-9_.,:/@%+-]`, not starting with `-` unless an integer:
//!   inside `${ … }`; arguments of `eval`, `trap`, `[[ … ]]`, `ssh`, `scp`;
//!   the command string of `sh -c` / `bash -c` / `su -c` (also in
//!   `docker exec c sh -c …`, after options such as `-e`, `-o x`, `--`);
//!   here-documents on a line that runs a shell or ssh (`ssh h <<EOF`,
//!   `cat <<EOF | sh`); variable-name operands, in which bash evaluates array
//!   subscripts (`read`, `unset`, `getopts`, `mapfile`, `printf -v`,
//!   `test -v`, the name part of `declare`/`local`/`export`); the target of
//!   `>&`/`<&` (bash expands it twice when not a number); any command whose
//!   name is a glob pattern.
//!
//! Positional arguments stay fully supported: `sh -c 'echo "$1"' sh ${{ v }}`
//! passes any value. An error is returned, whatever the value, for an
//! expression inside `$'…'`, in a here-document delimiter, as a `${ … }`
//! parameter name, or right after an unescaped `\` or `$`. Values containing
//! NUL bytes are rejected (`sh -c` cannot carry them).
//!
//! Where the literal text uses a construct the tracker does not model, or
//! one that dash and bash read differently, the state becomes *poisoned*:
//! every later expression is an error rather than a possibly unsafe
//! substitution. This covers backslashes, nested quotes or here-documents
//! inside backquotes; `case` inside `$( … )`; bash's `$[ … ]`, `name=( … )`
//! and `name[…]` at command position (bash reads these differently, or
//! recovers from a syntax error in them by running the next line); `$'…'`
//! containing `\'`; a quoted or nested construct spanning the line of a
//! pending here-document; line continuations in here-documents.
//!
//! The detection of re-parsing commands is a best-effort heuristic on the
//! literal words of the template. It cannot see through variables
//! (`$SHELL -c …`) and does not know every program that interprets its
//! arguments (`xargs sh`, `find -exec`, `watch`, a script
//! running `eval "$1"`, data later used in bash arithmetic or as a variable
//! name). Passing values through environment variables (`"$VAR"`) remains the
//! most robust pattern. Argument injection (a value starting with `-` taken as
//! an option by the program) is outside what quoting can prevent, except
//! where noted above. `${{ x | raw }}` bypasses all of this.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;

use minijinja::value::ValueKind;
use minijinja::{Environment, Expression, UndefinedBehavior, Value};

/// Default fuel (minijinja VM instructions) for one evaluation.
pub const DEFAULT_FUEL: u64 = 100_000;
/// Recursion limit handed to minijinja.
const RECURSION_LIMIT: usize = 32;
/// Longest expression source accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 16 * 1024;
/// Most operators/punctuation tokens one expression may contain. This bounds
/// the nesting depth of the compiled expression and so the native stack used
/// by minijinja's recursive compiler.
pub const MAX_EXPR_OPERATORS: usize = 256;

/// Error from parsing, compiling, evaluating or rendering an expression.
///
/// `Display` prints [`message`](Self::message), which names the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Human-readable description, mentioning the expression text.
    pub message: String,
    /// Byte offset in the template (of the `${{`, or of the literal text at fault).
    pub offset: Option<usize>,
    /// The expression source (inner text), when the error concerns one.
    pub expr: Option<String>,
}

impl ExprError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            offset: None,
            expr: None,
        }
    }

    fn at(mut self, offset: usize) -> Self {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    fn for_expr(mut self, src: &str) -> Self {
        if self.expr.is_none() {
            self.expr = Some(src.to_owned());
        }
        self
    }
}

/// Shows an expression source the way it is written in a workflow.
fn show(src: &str) -> String {
    format!("`${{{{ {src} }}}}`")
}

/// One `${{ … }}` occurrence in a template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprRef {
    /// Byte offset of the `${{`.
    pub start: usize,
    /// Byte offset just after the closing `}}`.
    pub end: usize,
    /// Inner text, trimmed, with a trailing `| raw` removed.
    pub source: String,
    /// Whether the expression ended in `| raw` (no shell escaping).
    pub raw: bool,
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text, copied unchanged.
    Lit(String),
    /// An expression to substitute.
    Expr(ExprRef),
}

/// True if the string contains at least one `${{`.
#[must_use]
pub fn has_expressions(s: &str) -> bool {
    s.contains("${{")
}

/// Parses a template into literal text and expressions.
///
/// The matching `}}` is found while skipping quoted string literals inside the
/// expression (`'…'` and `"…"` with backslash escapes) and balanced braces, so
/// `${{ "}}" }}` works. An unterminated `${{` is an error carrying its byte
/// offset. Plain `{{ … }}` is literal text.
///
/// # Errors
/// An unterminated `${{` or string literal, with the byte offset of the `${{`.
pub fn parse_template(s: &str) -> Result<Vec<Segment>, ExprError> {
    let mut segments = Vec::new();
    let mut pos = 0;
    while let Some(rel) = s.get(pos..).and_then(|rest| rest.find("${{")) {
        let start = pos + rel;
        let inner_start = start + 3;
        let close = find_close(s, start, inner_start)?;
        if start > pos {
            segments.push(Segment::Lit(s[pos..start].to_owned()));
        }
        let (source, raw) = strip_raw(&s[inner_start..close]);
        segments.push(Segment::Expr(ExprRef {
            start,
            end: close + 2,
            source: source.to_owned(),
            raw,
        }));
        pos = close + 2;
    }
    if pos < s.len() {
        segments.push(Segment::Lit(s[pos..].to_owned()));
    }
    Ok(segments)
}

/// Index just after the string literal starting at `i` (whose byte is the
/// quote), or `None` if it is not terminated.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let quote = *b.get(i)?;
    let mut j = i + 1;
    while let Some(&c) = b.get(j) {
        if c == b'\\' {
            j += 2;
        } else if c == quote {
            return Some(j + 1);
        } else {
            j += 1;
        }
    }
    None
}

/// Finds the byte index of the `}}` closing the expression opened at `open`.
fn find_close(s: &str, open: usize, from: usize) -> Result<usize, ExprError> {
    let b = s.as_bytes();
    let mut i = from;
    let mut depth = 0usize;
    while let Some(&c) = b.get(i) {
        match c {
            b'\'' | b'"' => {
                i = skip_string(b, i).ok_or_else(|| {
                    ExprError::new(format!(
                        "unterminated string literal in the expression starting at byte {open}"
                    ))
                    .at(open)
                })?;
                continue;
            }
            b'{' => depth += 1,
            b'}' => {
                if depth > 0 {
                    depth -= 1;
                } else if b.get(i + 1) == Some(&b'}') {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(ExprError::new(format!(
        "unterminated `${{{{` at byte {open}: missing `}}}}`"
    ))
    .at(open))
}

/// Trims an expression and removes a trailing `| raw`.
fn strip_raw(inner: &str) -> (&str, bool) {
    let t = inner.trim();
    if let Some(rest) = t.strip_suffix("raw")
        && rest.ends_with(|c: char| c.is_whitespace() || c == '|')
        && let Some(before) = rest.trim_end().strip_suffix('|')
    {
        return (before.trim_end(), true);
    }
    (t, false)
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// End of `[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*` starting at `start` (== `start` if none).
fn scan_hyphen_name(b: &[u8], start: usize) -> usize {
    let run = |from: usize| {
        let mut k = from;
        while b.get(k).is_some_and(|&c| is_name_byte(c)) {
            k += 1;
        }
        k
    };
    let mut j = run(start);
    if j == start {
        return start;
    }
    while b.get(j) == Some(&b'-') {
        let e = run(j + 1);
        if e == j + 1 {
            break;
        }
        j = e;
    }
    j
}

/// Rewrites `steps.a-b` / `params.a-b` to `steps["a-b"]` / `params["a-b"]`
/// outside string literals, at identifier boundaries.
fn rewrite_hyphens(src: &str) -> Cow<'_, str> {
    if !src.contains('-') {
        return Cow::Borrowed(src);
    }
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 8);
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\'' || c == b'"' {
            let end = skip_string(b, i).unwrap_or(b.len());
            out.push_str(&src[i..end]);
            i = end;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while b.get(i).is_some_and(|&c| is_name_byte(c)) {
                i += 1;
            }
            let ident = &src[start..i];
            out.push_str(ident);
            let after_dot = start > 0 && b.get(start - 1) == Some(&b'.');
            if !after_dot && (ident == "steps" || ident == "params") && b.get(i) == Some(&b'.') {
                let name_end = scan_hyphen_name(b, i + 1);
                let name = &src[i + 1..name_end];
                if name.contains('-') {
                    out.push_str("[\"");
                    out.push_str(name);
                    out.push_str("\"]");
                    i = name_end;
                }
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while b.get(i).is_some_and(|&c| is_name_byte(c)) {
                i += 1;
            }
            out.push_str(&src[start..i]);
        } else {
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    Cow::Owned(out)
}

/// Upper bound on the nesting an expression can produce: punctuation tokens
/// and keyword operators outside string literals.
fn operator_count(src: &str) -> usize {
    const KEYWORDS: &[&str] = &["not", "and", "or", "if", "else", "is", "in"];
    let b = src.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\'' || c == b'"' {
            i = skip_string(b, i).unwrap_or(b.len());
            n += 1;
        } else if is_name_byte(c) {
            let start = i;
            while b.get(i).is_some_and(|&c| is_name_byte(c)) {
                i += 1;
            }
            if KEYWORDS.contains(&&src[start..i]) {
                n += 1;
            }
        } else {
            if c.is_ascii_punctuation() {
                n += 1;
            }
            i += 1;
        }
    }
    n
}

/// Describes a minijinja error without its template location suffix.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Converts an evaluated value to the text substituted into a template.
fn value_to_string(v: &Value, src: &str) -> Result<String, ExprError> {
    match v.kind() {
        ValueKind::Undefined => {
            Err(ExprError::new(format!("{} is undefined", show(src))).for_expr(src))
        }
        ValueKind::None => Ok(String::new()),
        ValueKind::Bool => Ok(if v.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::String => Ok(v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            serde_json::to_string(v).map_err(|e| {
                ExprError::new(format!("cannot convert {} to JSON: {e}", show(src))).for_expr(src)
            })
        }
        ValueKind::Bytes => match v.as_bytes().map(std::str::from_utf8) {
            Some(Ok(s)) => Ok(s.to_owned()),
            _ => {
                Err(ExprError::new(format!("{} is not valid UTF-8 text", show(src))).for_expr(src))
            }
        },
        ValueKind::Invalid => Err(ExprError::new(format!(
            "{} produced an invalid value: {v}",
            show(src)
        ))
        .for_expr(src)),
        _ => Ok(v.to_string()),
    }
}

/// Compiles and evaluates `${{ … }}` expressions; holds a configured
/// minijinja environment.
pub struct Evaluator {
    env: Environment<'static>,
}

impl fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluator")
            .field("fuel", &self.env.fuel())
            .field("recursion_limit", &self.env.recursion_limit())
            .finish_non_exhaustive()
    }
}

impl Default for Evaluator {
    fn default() -> Self {
        Self::new()
    }
}

impl Evaluator {
    /// An evaluator with [`DEFAULT_FUEL`], semi-strict undefined handling and a
    /// small recursion limit.
    #[must_use]
    pub fn new() -> Self {
        Self::with_fuel(DEFAULT_FUEL)
    }

    /// Like [`Evaluator::new`] with a different fuel budget per evaluation.
    #[must_use]
    pub fn with_fuel(fuel: u64) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_fuel(Some(fuel));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_debug(false);
        Self { env }
    }

    fn compile(&self, expr: &str) -> Result<Expression<'_, 'static>, ExprError> {
        let (src, _) = strip_raw(expr);
        if src.is_empty() {
            return Err(ExprError::new("empty expression `${{ }}`").for_expr(src));
        }
        if src.len() > MAX_EXPR_LEN {
            return Err(ExprError::new(format!(
                "expression starting {} is too long ({} bytes, at most {MAX_EXPR_LEN})",
                show(&src.chars().take(40).collect::<String>()),
                src.len()
            ))
            .for_expr(src));
        }
        if operator_count(src) > MAX_EXPR_OPERATORS {
            return Err(ExprError::new(format!(
                "expression {} is too complex (more than {MAX_EXPR_OPERATORS} operators)",
                show(&src.chars().take(40).collect::<String>())
            ))
            .for_expr(src));
        }
        let rewritten = rewrite_hyphens(src).into_owned();
        self.env.compile_expression_owned(rewritten).map_err(|e| {
            ExprError::new(format!(
                "invalid expression {}: {}",
                show(src),
                describe(&e)
            ))
            .for_expr(src)
        })
    }

    /// Syntax-checks one expression (inner text) without evaluating it.
    ///
    /// # Errors
    /// A syntax error, an empty expression, or one too long or too complex;
    /// the message names the expression.
    pub fn check(&self, expr: &str) -> Result<(), ExprError> {
        self.compile(expr).map(drop)
    }

    /// Parses a template and compiles every expression in it. Returns all
    /// errors, with the byte offset of the `${{` concerned.
    pub fn check_template(&self, tpl: &str) -> Vec<ExprError> {
        match parse_template(tpl) {
            Err(e) => vec![e],
            Ok(segments) => segments
                .iter()
                .filter_map(|seg| match seg {
                    Segment::Expr(r) => self.check(&r.source).err().map(|e| e.at(r.start)),
                    Segment::Lit(_) => None,
                })
                .collect(),
        }
    }

    /// Like [`check_template`](Self::check_template), and also reports
    /// expressions that [`render_shell`](Self::render_shell) will refuse
    /// whatever their value (e.g. inside `$'…'`, in a heredoc delimiter, or
    /// after a construct the quoting tracker cannot follow).
    pub fn check_shell_template(&self, tpl: &str) -> Vec<ExprError> {
        let segments = match parse_template(tpl) {
            Err(e) => return vec![e],
            Ok(s) => s,
        };
        let mut errors = Vec::new();
        let mut state = ShellState::new();
        let mut offset = 0;
        for seg in &segments {
            match seg {
                Segment::Lit(text) => {
                    if let Err(m) = state.feed_literal(text) {
                        errors.push(ExprError::new(m).at(offset));
                    }
                    offset += text.len();
                }
                Segment::Expr(r) => {
                    if let Err(e) = self.check(&r.source) {
                        errors.push(e.at(r.start));
                    }
                    if !r.raw {
                        match state.plan() {
                            Ok(_) => state.mark_emitted(),
                            Err(m) => errors.push(shell_error(r, &m)),
                        }
                    }
                    offset = r.end;
                }
            }
        }
        errors
    }

    /// Evaluates one expression (inner text; a trailing `| raw` is ignored).
    /// The result may be undefined; use [`Value::is_undefined`] to test.
    ///
    /// # Errors
    /// Compilation errors as for [`check`](Self::check), and evaluation
    /// errors (undefined parents, type errors, fuel exhausted, …).
    pub fn eval(&self, expr: &str, ctx: &Value) -> Result<Value, ExprError> {
        let (src, _) = strip_raw(expr);
        let compiled = self.compile(src)?;
        compiled.eval(ctx.clone()).map_err(|e| {
            ExprError::new(format!("cannot evaluate {}: {}", show(src), describe(&e))).for_expr(src)
        })
    }

    /// Evaluates an `if:` condition and returns its truthiness. Accepts a bare
    /// expression (`steps.a.status == 'failed'`) or one wrapped whole in
    /// `${{ }}`. Undefined values are false.
    ///
    /// # Errors
    /// As for [`eval`](Self::eval), and when the condition mixes text and
    /// `${{ }}` instead of being a single expression.
    pub fn truthy(&self, expr: &str, ctx: &Value) -> Result<bool, ExprError> {
        let t = expr.trim();
        let src = if has_expressions(t) {
            match parse_template(t)?.as_slice() {
                [Segment::Expr(r)] if r.start == 0 && r.end == t.len() => r.source.clone(),
                _ => {
                    return Err(ExprError::new(format!(
                        "condition `{t}` must be a single expression, either bare or wrapped whole in `${{{{ }}}}`"
                    )));
                }
            }
        } else {
            t.to_owned()
        };
        Ok(self.eval(&src, ctx)?.is_true())
    }

    fn eval_ref(&self, r: &ExprRef, ctx: &Value) -> Result<String, ExprError> {
        let v = self.eval(&r.source, ctx).map_err(|e| e.at(r.start))?;
        value_to_string(&v, &r.source).map_err(|e| e.at(r.start))
    }

    /// Substitutes every `${{ }}` with its value's string form, without any
    /// quoting. For URLs, messages and environment values.
    ///
    /// # Errors
    /// The first parse or evaluation error, or an undefined (or otherwise
    /// unprintable) value, with the offset of its `${{`.
    pub fn render_plain(&self, tpl: &str, ctx: &Value) -> Result<String, ExprError> {
        let mut out = String::with_capacity(tpl.len());
        for seg in parse_template(tpl)? {
            match seg {
                Segment::Lit(text) => out.push_str(&text),
                Segment::Expr(r) => out.push_str(&self.eval_ref(&r, ctx)?),
            }
        }
        Ok(out)
    }

    /// Substitutes every `${{ }}` into a POSIX `sh -c` command, escaping each
    /// value for the shell quoting context at the place it lands, so the shell
    /// sees exactly the value as data. `${{ x | raw }}` is inserted unescaped.
    /// Contexts that cannot be made safe are errors (see the module docs).
    ///
    /// # Errors
    /// As for [`render_plain`](Self::render_plain), and when a value cannot
    /// be placed safely where it lands (the message says why).
    pub fn render_shell(&self, tpl: &str, ctx: &Value) -> Result<String, ExprError> {
        self.render_shell_with(tpl, ctx, &|_| None)
    }

    /// [`render_shell`](Self::render_shell), where an expression that is exactly a secret
    /// (`${{ secrets.NAME }}`) becomes a quoted reference to the environment variable that
    /// `secret_var(NAME)` names, instead of the value. Any other use of `secrets` in a shell
    /// command is refused: the value would end up in the command line.
    pub fn render_shell_with(
        &self,
        tpl: &str,
        ctx: &Value,
        secret_var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ExprError> {
        let mut out = String::with_capacity(tpl.len());
        let mut state = ShellState::new();
        let mut offset = 0;
        for seg in parse_template(tpl)? {
            match seg {
                Segment::Lit(text) => {
                    state
                        .feed_literal(&text)
                        .map_err(|m| ExprError::new(m).at(offset))?;
                    offset += text.len();
                    out.push_str(&text);
                }
                Segment::Expr(r) => {
                    if let Some(name) = secret_name(&r.source) {
                        let var = secret_var(name).ok_or_else(|| {
                            ExprError::new(format!("secret `{name}` is not available"))
                                .at(r.start)
                                .for_expr(&r.source)
                        })?;
                        let text = state.emit_env_ref(&var).map_err(|m| shell_error(&r, &m))?;
                        out.push_str(&text);
                        offset = r.end;
                        continue;
                    }
                    if mentions_secrets(&r.source) {
                        return Err(shell_error(
                            &r,
                            "a secret can only be used alone, as `${{ secrets.NAME }}` (its value would otherwise land in the command line)",
                        ));
                    }
                    let value = self.eval_ref(&r, ctx)?;
                    if r.raw {
                        out.push_str(&value);
                    } else {
                        let text = state.emit(&value).map_err(|m| shell_error(&r, &m))?;
                        out.push_str(&text);
                    }
                    offset = r.end;
                }
            }
        }
        Ok(out)
    }
}

/// `NAME` if the expression is exactly `secrets.NAME` or `secrets['NAME']`.
pub fn secret_name(source: &str) -> Option<&str> {
    let s = source.trim();
    let name = if let Some(rest) = s.strip_prefix("secrets.") {
        rest
    } else {
        s.strip_prefix("secrets[")?
            .strip_suffix(']')?
            .trim()
            .strip_prefix(['\'', '"'])?
            .strip_suffix(['\'', '"'])?
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    (ok && (s.starts_with("secrets[") || !name.contains('.'))).then_some(name)
}

/// Whether an expression refers to `secrets` at all.
pub fn mentions_secrets(source: &str) -> bool {
    let b = source.as_bytes();
    source.match_indices("secrets").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 7).copied();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
    })
}

/// Every secret name the `${{ }}` expressions of a template mention as `secrets.NAME`.
pub fn secrets_in(tpl: &str) -> Vec<String> {
    let Ok(segments) = parse_template(tpl) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for seg in segments {
        if let Segment::Expr(r) = seg {
            let src = r.source.as_str();
            let mut rest = src;
            while let Some(i) = rest.find("secrets") {
                let tail = &rest[i + 7..];
                let name: Option<String> = if let Some(t) = tail.strip_prefix('.') {
                    let n: String = t
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    (!n.is_empty()).then_some(n)
                } else if let Some(t) = tail.strip_prefix("['").or_else(|| tail.strip_prefix("[\""))
                {
                    t.find(['\'', '"']).map(|e| t[..e].to_owned())
                } else {
                    None
                };
                if let Some(n) = name
                    && !out.contains(&n)
                {
                    out.push(n);
                }
                rest = tail;
            }
        }
    }
    out
}

fn shell_error(r: &ExprRef, reason: &str) -> ExprError {
    ExprError::new(format!(
        "cannot substitute {} into the shell command: {reason}",
        show(&r.source)
    ))
    .at(r.start)
    .for_expr(&r.source)
}

// ---------------------------------------------------------------------------
// Shell quoting state machine
// ---------------------------------------------------------------------------

/// Words after which the next word is still in command position.
const PREFIX_WORDS: &[&str] = &[
    "!", "{", "if", "then", "else", "elif", "do", "while", "until", "time", "exec", "command",
    "builtin", "nohup", "sudo", "doas", "env",
];
/// Programs whose `-c` argument is shell code.
const SHELL_WORDS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "su"];
/// Programs that hand their arguments to a remote shell.
const REMOTE_WORDS: &[&str] = &["ssh", "scp"];
/// Declaration builtins where `-i` makes assignments arithmetic.
const DECL_WORDS: &[&str] = &["declare", "typeset", "local", "export", "readonly"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShellKind {
    /// The whole command.
    Top,
    /// `$( … )`.
    Subst,
    /// `` ` … ` ``; `in_double` if opened inside double quotes or a heredoc.
    Backtick { in_double: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Danger {
    /// Arguments are re-parsed as shell code (this also applies to
    /// here-documents on the same line).
    Reparse(&'static str),
    /// Arguments are variable names, whose array subscripts bash evaluates.
    Names(&'static str),
    /// Arguments are evaluated arithmetically.
    Arith(&'static str),
}

/// A single upcoming word that needs restricting (the argument of `sh -c`,
/// the name after `printf -v`, the target of `>&`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    No,
    /// The next word is special, for this reason.
    Armed(&'static str),
    /// Inside that word.
    InWord(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DelimMode {
    Plain,
    Single,
    Double,
}

#[derive(Debug)]
struct DelimReader {
    strip_tabs: bool,
    buf: String,
    quoted: bool,
    started: bool,
    mode: DelimMode,
}

#[derive(Debug, Clone)]
struct HeredocSpec {
    delim: String,
    quoted: bool,
    strip_tabs: bool,
    /// The body is fed to a shell or ssh (re-parsed as code).
    reparse: bool,
}

#[derive(Debug)]
struct HeredocBody {
    spec: HeredocSpec,
    line: String,
    line_has_expr: bool,
}

#[derive(Debug)]
struct ShellFrame {
    kind: ShellKind,
    parens: u32,
    cmd_pos: bool,
    in_word: bool,
    /// The word has no expansion: `word` holds its exact (dequoted) text.
    word_static: bool,
    /// The word has an expansion that may vanish or split (unquoted, or `"$@"`).
    word_unquoted_exp: bool,
    /// The word has unquoted glob characters (it may name any file).
    word_glob: bool,
    /// Dequoted text of the current word.
    word: String,
    saw_shell: bool,
    saw_decl: bool,
    danger: Option<Danger>,
    until_brackets: bool,
    slot: Slot,
    /// The armed special word is preceded by an option argument (`-o name`).
    slot_hold: bool,
    /// The next word is the target of a redirection.
    redir_target: bool,
    /// … of `>&` / `<&`, which bash expands twice when it is not a number.
    redir_dup: bool,
    /// Name of the current simple command, once known.
    cmd_name: String,
    line_reparse: bool,
    pending: VecDeque<HeredocSpec>,
    delim: Option<DelimReader>,
    poisoned: Option<String>,
}

impl ShellFrame {
    fn new(kind: ShellKind) -> Self {
        Self {
            kind,
            parens: 0,
            cmd_pos: true,
            in_word: false,
            word_static: true,
            word_unquoted_exp: false,
            word_glob: false,
            word: String::new(),
            saw_shell: false,
            saw_decl: false,
            danger: None,
            until_brackets: false,
            slot: Slot::No,
            slot_hold: false,
            redir_target: false,
            redir_dup: false,
            cmd_name: String::new(),
            line_reparse: false,
            pending: VecDeque::new(),
            delim: None,
            poisoned: None,
        }
    }

    fn begin_word(&mut self) {
        if !self.in_word {
            self.in_word = true;
            self.word_static = true;
            self.word_unquoted_exp = false;
            self.word_glob = false;
            self.word.clear();
            if let (Slot::Armed(why), false) = (self.slot, self.redir_target) {
                self.slot = Slot::InWord(why);
            }
        }
    }

    /// The current word contains an expansion or a substituted value.
    fn taint_word(&mut self) {
        self.begin_word();
        self.word_static = false;
    }

    /// The current word contains an unquoted `$…` or backquote expansion.
    fn taint_word_unquoted(&mut self) {
        self.taint_word();
        self.word_unquoted_exp = true;
    }

    fn push_word_char(&mut self, c: char) {
        self.begin_word();
        self.word.push(c);
        // `*` and `?` always glob; `[` only with a later `]` (`[` alone is
        // the test command).
        match c {
            '*' | '?' => self.word_glob = true,
            ']' if self.word.chars().rev().skip(1).any(|x| x == '[') => self.word_glob = true,
            _ => {}
        }
    }

    fn set_danger(&mut self, d: Danger) {
        // Arithmetic is the stricter restriction; keep it once set.
        if !matches!(self.danger, Some(Danger::Arith(_))) {
            self.danger = Some(d);
        }
        self.line_reparse |= matches!(d, Danger::Reparse(_));
    }

    fn end_word(&mut self) {
        if !self.in_word {
            return;
        }
        self.in_word = false;
        let word = std::mem::take(&mut self.word);
        let plain = self.word_static;
        if self.redir_target {
            // A file name or descriptor: neither the command position nor
            // the pending special argument move.
            self.redir_target = false;
            self.redir_dup = false;
            return;
        }
        if let Slot::InWord(why) = self.slot {
            // Options (`sh -c -e -o pipefail -- 'cmd'`) come before the
            // special word; an expansion may expand to nothing (or to several
            // words): in both cases the special word may still be to come.
            let option = word.starts_with('-') || word.starts_with('+');
            let keep = self.word_unquoted_exp || option || self.slot_hold;
            self.slot_hold =
                option && word.len() > 1 && !word.starts_with("--") && word.contains('o');
            self.slot = if keep { Slot::Armed(why) } else { Slot::No };
        }
        // Dangerous words are recognised from the literal characters of the
        // word even when it also holds expansions (`$x"eval"` may well be
        // `eval`): being wrong only makes the restriction stricter.
        let base = word.rsplit('/').next().unwrap_or(&word);
        // A glob may expand to the name of a shell (or of anything else).
        if SHELL_WORDS.contains(&base) || self.word_glob {
            self.saw_shell = true;
            self.line_reparse = true;
        }
        if REMOTE_WORDS.contains(&base) {
            self.set_danger(Danger::Reparse(
                "ssh/scp pass their arguments to a remote shell",
            ));
        }
        if self.cmd_pos {
            if plain && (PREFIX_WORDS.contains(&word.as_str()) || is_assignment(&word)) {
                return;
            }
            // `$x eval …`: if `$x` is empty the next word is the command.
            if !self.word_unquoted_exp {
                self.cmd_pos = false;
            }
            self.cmd_name.clone_from(&word);
            if self.word_glob {
                self.set_danger(Danger::Reparse(
                    "the command name is a glob pattern and may name any program",
                ));
            }
            match word.as_str() {
                "eval" => self.set_danger(Danger::Reparse("`eval` re-parses its arguments")),
                "trap" => self.set_danger(Danger::Reparse("`trap` actions are re-parsed")),
                "let" => self.set_danger(Danger::Arith("`let` evaluates arithmetic")),
                "[[" => {
                    self.set_danger(Danger::Reparse(
                        "`[[ … ]]` may evaluate operands arithmetically",
                    ));
                    self.until_brackets = true;
                }
                "case" if self.kind == ShellKind::Subst => {
                    self.poisoned = Some("`case` inside `$( … )`".to_owned());
                }
                "read" | "unset" | "getopts" | "mapfile" | "readarray" => {
                    self.set_danger(Danger::Names(
                        "bash evaluates array subscripts in the variable names this command takes",
                    ));
                }
                w if DECL_WORDS.contains(&w) => self.saw_decl = true,
                _ => {}
            }
        } else if word == "]]" && self.until_brackets {
            self.until_brackets = false;
            self.danger = None;
        }
        if let Some(flags) = word.strip_prefix('-')
            && !flags.starts_with('-')
        {
            if self.saw_shell && flags.contains('c') {
                self.slot = Slot::Armed("the argument of `sh -c` is re-parsed as shell code");
            }
            if flags == "v" && matches!(self.cmd_name.as_str(), "test" | "[" | "printf") {
                self.slot = Slot::Armed("bash evaluates array subscripts in the variable name");
            }
            if self.saw_decl && flags.contains('i') {
                self.set_danger(Danger::Arith("`declare -i` evaluates arithmetic"));
            }
        }
    }

    /// Forgets a word that is the file descriptor of a redirection (`2>`,
    /// bash's `{fd}>`) rather than an argument.
    fn drop_io_number(&mut self) {
        let w = self.word.as_str();
        let is_fd = !w.is_empty() && w.chars().all(|c| c.is_ascii_digit());
        let is_named_fd = w
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(is_name);
        if self.in_word && self.word_static && (is_fd || is_named_fd) {
            self.in_word = false;
            self.word.clear();
            if let Slot::InWord(why) = self.slot {
                self.slot = Slot::Armed(why);
            }
        }
    }

    /// A redirection operator: its target word is not a command argument.
    fn start_redirection(&mut self) {
        self.drop_io_number();
        self.end_word();
        self.redir_target = true;
    }

    fn end_command(&mut self) {
        if !self.until_brackets {
            self.danger = None;
        }
        self.saw_shell = false;
        self.saw_decl = false;
        self.slot = Slot::No;
        self.slot_hold = false;
        self.redir_target = false;
        self.redir_dup = false;
        self.cmd_name.clear();
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| is_name(name))
}

fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_open_subscript(word: &str) -> bool {
    match word.split_once('[') {
        Some((name, rest)) => {
            !name.is_empty()
                && !rest.contains(']')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        }
        None => false,
    }
}

#[derive(Debug)]
enum Frame {
    Shell(ShellFrame),
    Double,
    Single,
    AnsiC,
    Param {
        in_double: bool,
        empty: bool,
    },
    /// `$(( … ))` or `(( … ))`, with the depth of inner parentheses.
    Arith {
        depth: u32,
    },
    Comment,
    Heredoc(HeredocBody),
}

/// What one step of the literal scanner does.
enum Act {
    /// Consume n chars (0: re-examine the same char).
    Adv(usize),
    /// Push a frame, consume n chars.
    Push(Frame, usize),
    /// Pop the top frame, consume n chars.
    Pop(usize),
    /// `$` followed by a name start: consume 1, a `$name` is running.
    DollarName,
    /// Stop tracking; later expressions are errors.
    Poison(String),
    /// The literal ends with an escaping backslash.
    Backslash,
    /// The literal ends with `$`.
    Dollar,
    /// The rendered text is unsafe.
    Fail(String),
}

/// The character `k` (≥ 1) logical positions after `i`, skipping line
/// continuations (`\` + newline, which the shell removes before tokenizing),
/// and its raw index.
fn la(cs: &[char], i: usize, k: usize) -> (Option<char>, usize) {
    let mut j = i + 1;
    let mut left = k;
    loop {
        match cs.get(j) {
            None => return (None, j),
            Some('\\') if cs.get(j + 1) == Some(&'\n') => j += 2,
            Some(&c) => {
                left -= 1;
                if left == 0 {
                    return (Some(c), j);
                }
                j += 1;
            }
        }
    }
}

fn dollar(cs: &[char], i: usize, in_double: bool) -> Act {
    let (n1, j1) = la(cs, i, 1);
    let (n2, j2) = la(cs, i, 2);
    // number of raw chars up to and including raw index j
    let upto = |j: usize| j + 1 - i;
    match n1 {
        None => Act::Dollar,
        Some('(') if n2 == Some('(') => Act::Push(Frame::Arith { depth: 0 }, upto(j2)),
        Some('(') => Act::Push(Frame::Shell(ShellFrame::new(ShellKind::Subst)), upto(j1)),
        Some('{') => Act::Push(
            Frame::Param {
                in_double,
                empty: true,
            },
            upto(j1),
        ),
        // bash reads `$[ … ]` as arithmetic, dash as literal text: the shells
        // disagree on what follows, so stop tracking.
        Some('[') => Act::Poison("`$[ … ]` (read differently by bash and dash)".to_owned()),
        Some('\'') if !in_double => Act::Push(Frame::AnsiC, upto(j1)),
        Some('"') if !in_double => Act::Push(Frame::Double, upto(j1)),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => Act::DollarName,
        Some(c) if c.is_ascii_digit() || "$#?!@*-".contains(c) => Act::Adv(upto(j1)),
        Some(_) => Act::Adv(1),
    }
}

fn step_delim(f: &mut ShellFrame, c: char, next: Option<char>) -> Act {
    let Some(d) = f.delim.as_mut() else {
        return Act::Adv(0);
    };
    match d.mode {
        DelimMode::Plain => match c {
            ' ' | '\t' if !d.started => Act::Adv(1),
            ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                if !d.started {
                    return Act::Poison("here-document without a delimiter".to_owned());
                }
                let spec = HeredocSpec {
                    delim: std::mem::take(&mut d.buf),
                    quoted: d.quoted,
                    strip_tabs: d.strip_tabs,
                    reparse: false,
                };
                f.pending.push_back(spec);
                f.delim = None;
                Act::Adv(0)
            }
            '\'' => {
                d.started = true;
                d.quoted = true;
                d.mode = DelimMode::Single;
                Act::Adv(1)
            }
            '"' => {
                d.started = true;
                d.quoted = true;
                d.mode = DelimMode::Double;
                Act::Adv(1)
            }
            '\\' => match next {
                Some(n) if n != '\n' => {
                    d.started = true;
                    d.quoted = true;
                    d.buf.push(n);
                    Act::Adv(2)
                }
                _ => Act::Poison("unsupported here-document delimiter".to_owned()),
            },
            '$' | '`' => Act::Poison("here-document delimiter containing an expansion".to_owned()),
            _ => {
                d.started = true;
                d.buf.push(c);
                Act::Adv(1)
            }
        },
        DelimMode::Single => match c {
            '\'' => {
                d.mode = DelimMode::Plain;
                Act::Adv(1)
            }
            '\n' => Act::Poison("newline in a here-document delimiter".to_owned()),
            _ => {
                d.buf.push(c);
                Act::Adv(1)
            }
        },
        DelimMode::Double => match c {
            '"' => {
                d.mode = DelimMode::Plain;
                Act::Adv(1)
            }
            '\\' | '$' | '`' | '\n' => {
                Act::Poison("unsupported here-document delimiter".to_owned())
            }
            _ => {
                d.buf.push(c);
                Act::Adv(1)
            }
        },
    }
}

fn step_shell(f: &mut ShellFrame, cs: &[char], i: usize, c: char, heredoc_ok: bool) -> Act {
    let next = cs.get(i + 1).copied();
    if f.delim.is_some() {
        return step_delim(f, c, next);
    }
    match c {
        '\\' => match next {
            // A line continuation vanishes: it neither starts nor taints a word.
            Some('\n') => Act::Adv(2),
            Some(n) => {
                f.push_word_char(n);
                Act::Adv(2)
            }
            None => {
                f.taint_word();
                Act::Backslash
            }
        },
        '\'' => {
            f.begin_word();
            Act::Push(Frame::Single, 1)
        }
        '"' => {
            f.begin_word();
            Act::Push(Frame::Double, 1)
        }
        '`' => {
            if matches!(f.kind, ShellKind::Backtick { .. }) {
                f.end_word();
                Act::Pop(1)
            } else {
                f.taint_word_unquoted();
                Act::Push(
                    Frame::Shell(ShellFrame::new(ShellKind::Backtick { in_double: false })),
                    1,
                )
            }
        }
        '$' => {
            match cs.get(i + 1) {
                // `$'…'` and `$"…"` are quoted.
                Some('\'' | '"') => f.taint_word(),
                _ => f.taint_word_unquoted(),
            }
            dollar(cs, i, false)
        }
        '#' if !f.in_word => Act::Push(Frame::Comment, 1),
        '\n' => {
            f.end_word();
            f.end_command();
            f.cmd_pos = true;
            let reparse = f.line_reparse;
            f.line_reparse = false;
            for spec in f.pending.iter_mut() {
                spec.reparse |= reparse;
            }
            match f.pending.pop_front() {
                Some(spec) => Act::Push(
                    Frame::Heredoc(HeredocBody {
                        spec,
                        line: String::new(),
                        line_has_expr: false,
                    }),
                    1,
                ),
                None => Act::Adv(1),
            }
        }
        ' ' | '\t' => {
            f.end_word();
            Act::Adv(1)
        }
        // bash reads `&>` as a redirection of the same command.
        '&' if la(cs, i, 1).0 == Some('>') => {
            f.end_word();
            Act::Adv(1)
        }
        ';' | '&' | '|' => {
            f.end_word();
            f.end_command();
            f.cmd_pos = true;
            Act::Adv(1)
        }
        '<' | '>' if la(cs, i, 1).0 == Some('(') => {
            // bash process substitution: a command inside a word
            f.taint_word_unquoted();
            let (_, j1) = la(cs, i, 1);
            Act::Push(Frame::Shell(ShellFrame::new(ShellKind::Subst)), j1 + 1 - i)
        }
        '<' => {
            let (n1, j1) = la(cs, i, 1);
            let (n2, j2) = la(cs, i, 2);
            if n1 == Some('<') && n2 != Some('<') {
                // here-document: the delimiter reader takes the next word
                f.drop_io_number();
                f.end_word();
            } else {
                f.start_redirection();
            }
            if n1 == Some('&') {
                f.redir_dup = true;
                return Act::Adv(j1 + 1 - i);
            }
            if n1 != Some('<') {
                return Act::Adv(1);
            }
            match n2 {
                Some('<') => Act::Adv(j2 + 1 - i),
                _ if !heredoc_ok => Act::Poison(
                    "here-document inside backquotes or inside another here-document".to_owned(),
                ),
                third => {
                    let strip_tabs = third == Some('-');
                    let end = if strip_tabs { j2 } else { j1 };
                    f.delim = Some(DelimReader {
                        strip_tabs,
                        buf: String::new(),
                        quoted: false,
                        started: false,
                        mode: DelimMode::Plain,
                    });
                    Act::Adv(end + 1 - i)
                }
            }
        }
        '>' => {
            f.start_redirection();
            let (n1, j1) = la(cs, i, 1);
            match n1 {
                Some('&') => {
                    f.redir_dup = true;
                    Act::Adv(j1 + 1 - i)
                }
                Some('>' | '|') => Act::Adv(j1 + 1 - i),
                _ => Act::Adv(1),
            }
        }
        '(' => {
            if f.in_word && f.word.ends_with('=') {
                // bash recovers from a syntax error inside `name=( … )` by
                // skipping to the next line, which could run later lines of
                // a multi-line value; dash rejects the syntax outright.
                return Act::Poison("bash array assignment `name=( … )`".to_owned());
            }
            f.end_word();
            let (n1, j1) = la(cs, i, 1);
            if f.cmd_pos && n1 == Some('(') {
                return Act::Push(Frame::Arith { depth: 0 }, j1 + 1 - i);
            }
            f.parens += 1;
            f.cmd_pos = true;
            Act::Adv(1)
        }
        ')' => {
            f.end_word();
            f.end_command();
            f.cmd_pos = true;
            if f.kind == ShellKind::Subst && f.parens == 0 {
                Act::Pop(1)
            } else {
                f.parens = f.parens.saturating_sub(1);
                Act::Adv(1)
            }
        }
        '[' if f.cmd_pos && f.in_word && f.word_static && is_name(&f.word) => {
            // bash scans `name[ … ]` at command position as one word up to the
            // matching `]`, across blanks, quotes and newlines; dash does not.
            Act::Poison("bash array subscript `name[…]` at command position".to_owned())
        }
        _ => {
            f.push_word_char(c);
            Act::Adv(1)
        }
    }
}

fn step_arith(depth: &mut u32, cs: &[char], i: usize, c: char) -> Act {
    let next = cs.get(i + 1).copied();
    let (n1, j1) = la(cs, i, 1);
    match c {
        '(' => {
            *depth += 1;
            Act::Adv(1)
        }
        ')' => {
            if *depth > 0 {
                *depth -= 1;
                Act::Adv(1)
            } else if n1 == Some(')') {
                Act::Pop(j1 + 1 - i)
            } else {
                Act::Poison("unbalanced `(( … ))`".to_owned())
            }
        }
        '$' => dollar(cs, i, false),
        '\'' | '"' => Act::Poison("quotes inside arithmetic".to_owned()),
        '`' => Act::Push(
            Frame::Shell(ShellFrame::new(ShellKind::Backtick { in_double: false })),
            1,
        ),
        '\\' => {
            if next.is_none() {
                Act::Backslash
            } else {
                Act::Adv(2)
            }
        }
        _ => Act::Adv(1),
    }
}

/// Checks a completed here-document line; `Pop` if it ends the body.
fn heredoc_line_end(h: &mut HeredocBody, from_expr: bool) -> Act {
    let line = std::mem::take(&mut h.line);
    let has_expr = h.line_has_expr || from_expr;
    h.line_has_expr = false;
    let cmp = if h.spec.strip_tabs {
        line.trim_start_matches('\t')
    } else {
        line.as_str()
    };
    if cmp == h.spec.delim {
        if has_expr {
            return Act::Fail(format!(
                "a substituted value would end the here-document early (a line equals its delimiter `{}`)",
                h.spec.delim
            ));
        }
        return Act::Pop(1);
    }
    Act::Adv(1)
}

fn step_heredoc(h: &mut HeredocBody, cs: &[char], i: usize, c: char) -> Act {
    let next = cs.get(i + 1).copied();
    match c {
        '\n' => heredoc_line_end(h, false),
        _ if h.spec.quoted => Act::Adv(1),
        '\\' => match next {
            None => Act::Backslash,
            Some('\n') => Act::Poison("line continuation in a here-document".to_owned()),
            Some(_) => Act::Adv(2),
        },
        '$' => dollar(cs, i, true),
        '`' => Act::Push(
            Frame::Shell(ShellFrame::new(ShellKind::Backtick { in_double: true })),
            1,
        ),
        _ => Act::Adv(1),
    }
}

/// How a value must be escaped at the current position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Word,
    Double,
    Single,
    Comment,
    HeredocQuoted,
    HeredocUnquoted,
    /// Restricted to inert characters, emitted as is.
    Inert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restrict {
    None,
    SafeChars(&'static str),
    Integer(&'static str),
}

impl Restrict {
    fn tighten(&mut self, other: Restrict) {
        let rank = |r: &Restrict| match r {
            Restrict::None => 0,
            Restrict::SafeChars(_) => 1,
            Restrict::Integer(_) => 2,
        };
        if rank(&other) > rank(self) {
            *self = other;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    base: Base,
    restrict: Restrict,
    backtick: bool,
}

fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.,:/@%+-".contains(c)
}

fn escape_with(v: &str, special: &[char]) -> String {
    let mut s = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        if special.contains(&c) {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

fn quote_word(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('\'');
    s.push_str(&v.replace('\'', "'\\''"));
    s.push('\'');
    s
}

/// POSIX shell quoting state over the literal text of a template.
#[derive(Debug)]
struct ShellState {
    stack: Vec<Frame>,
    poison: Option<String>,
    pending_backslash: bool,
    pending_dollar: bool,
    /// A `$name` expansion is being read (a value starting with a name
    /// character would extend the name).
    name_run: bool,
    heredoc_gen: u64,
}

impl ShellState {
    fn new() -> Self {
        Self {
            stack: vec![Frame::Shell(ShellFrame::new(ShellKind::Top))],
            poison: None,
            pending_backslash: false,
            pending_dollar: false,
            name_run: false,
            heredoc_gen: 0,
        }
    }

    fn heredoc_index(&self) -> Option<usize> {
        self.stack
            .iter()
            .rposition(|f| matches!(f, Frame::Heredoc(_)))
    }

    /// Whether the shell removes `\` + newline at the current position.
    fn removes_continuations(&self) -> bool {
        match self.stack.last() {
            Some(Frame::Shell(f)) => f.delim.is_none(),
            Some(Frame::Double | Frame::Param { .. } | Frame::Arith { .. }) => true,
            _ => false,
        }
    }

    fn in_backtick(&self) -> bool {
        self.stack.iter().any(|f| {
            matches!(
                f,
                Frame::Shell(ShellFrame {
                    kind: ShellKind::Backtick { .. },
                    ..
                })
            )
        })
    }

    fn in_double_backtick(&self) -> bool {
        self.stack.iter().any(|f| {
            matches!(
                f,
                Frame::Shell(ShellFrame {
                    kind: ShellKind::Backtick { in_double: true },
                    ..
                })
            )
        })
    }

    /// Index of the shell frame with heredocs waiting for a newline.
    fn pending_owner(&self) -> Option<usize> {
        self.stack.iter().rposition(|f| match f {
            Frame::Shell(s) => !s.pending.is_empty(),
            _ => false,
        })
    }

    fn feed_literal(&mut self, lit: &str) -> Result<(), String> {
        self.pending_backslash = false;
        self.pending_dollar = false;
        self.name_run = false;
        let cs: Vec<char> = lit.chars().collect();
        let mut i = 0;
        while i < cs.len() && self.poison.is_none() {
            let before = self.heredoc_index().map(|h| (h, self.heredoc_gen));
            let j = self.step(&cs, i)?;
            let after = self.heredoc_index().map(|h| (h, self.heredoc_gen));
            if before.is_some() && j > i + 1 && cs.get(i + 1..j).is_some_and(|w| w.contains(&'\n'))
            {
                self.poison = Some("line continuation inside a here-document".to_owned());
            }
            if let (Some((h, _)), true) = (before, before == after)
                && let Some(Frame::Heredoc(body)) = self.stack.get_mut(h)
            {
                body.line
                    .extend(cs.get(i..j).unwrap_or(&[]).iter().filter(|&&c| c != '\n'));
            }
            i = j;
        }
        Ok(())
    }

    fn step(&mut self, cs: &[char], i: usize) -> Result<usize, String> {
        let Some(&c) = cs.get(i) else {
            return Ok(cs.len());
        };
        let name_run_before = self.name_run;
        let continuing = self.name_run && (c.is_ascii_alphanumeric() || c == '_');
        self.name_run = false;

        if let Some(Frame::Comment) = self.stack.last() {
            if c == '\n' {
                self.stack.pop();
            } else {
                if c == '`' && self.in_backtick() {
                    self.poison = Some("backquote inside a comment within backquotes".to_owned());
                }
                return Ok(i + 1);
            }
        }
        let top = self.stack.len().saturating_sub(1);
        if c == '\n' {
            if self.heredoc_index().is_some_and(|h| h != top) {
                self.poison =
                    Some("a construct inside a here-document spans several lines".to_owned());
                return Ok(cs.len());
            }
            if !matches!(self.stack.last(), Some(Frame::Heredoc(_)))
                && self.pending_owner().is_some_and(|o| o != top)
            {
                self.poison = Some(
                    "a quoted or nested construct spans the line holding a here-document"
                        .to_owned(),
                );
                return Ok(cs.len());
            }
        }
        if self.in_backtick() {
            let top_is_backtick = matches!(
                self.stack.last(),
                Some(Frame::Shell(ShellFrame {
                    kind: ShellKind::Backtick { .. },
                    ..
                }))
            );
            if c == '\\' {
                self.poison = Some("backslash inside backquotes (use `$( … )`)".to_owned());
                return Ok(cs.len());
            }
            if c == '`' && !top_is_backtick {
                self.poison = Some("backquote nested in quotes inside backquotes".to_owned());
                return Ok(cs.len());
            }
            if c == '"' && self.in_double_backtick() {
                self.poison =
                    Some("double quotes inside backquotes inside double quotes".to_owned());
                return Ok(cs.len());
            }
        }
        if c == '\\' && cs.get(i + 1) == Some(&'\n') && self.removes_continuations() {
            if self.heredoc_index().is_some() {
                self.poison = Some("line continuation inside a here-document".to_owned());
                return Ok(cs.len());
            }
            // The pair vanishes: `$HO\<newline>ME` is still `$HOME`.
            self.name_run = name_run_before;
            return Ok(i + 2);
        }
        let heredoc_ok = !self.in_backtick() && self.heredoc_index().is_none();

        let act = match self.stack.last_mut() {
            None => Act::Adv(1),
            Some(Frame::Shell(f)) => {
                let act = step_shell(f, cs, i, c, heredoc_ok);
                if let Some(p) = f.poisoned.take() {
                    Act::Poison(p)
                } else {
                    act
                }
            }
            Some(Frame::Double) => match c {
                '\\' if cs.get(i + 1).is_none() => Act::Backslash,
                '\\' => Act::Adv(2),
                '"' => Act::Pop(1),
                '`' => Act::Push(
                    Frame::Shell(ShellFrame::new(ShellKind::Backtick { in_double: true })),
                    1,
                ),
                '$' => dollar(cs, i, true),
                _ => Act::Adv(1),
            },
            Some(Frame::Single) => match c {
                '\'' => Act::Pop(1),
                _ => Act::Adv(1),
            },
            Some(Frame::AnsiC) => match c {
                '\\' => match cs.get(i + 1) {
                    None => Act::Backslash,
                    Some('\'') => Act::Poison("escaped quote inside `$'…'`".to_owned()),
                    Some(_) => Act::Adv(2),
                },
                '\'' => Act::Pop(1),
                _ => Act::Adv(1),
            },
            Some(Frame::Param { in_double, empty }) => {
                let in_double = *in_double;
                match c {
                    '}' => Act::Pop(1),
                    '{' => Act::Poison("`{` inside `${ … }`".to_owned()),
                    '\'' | '"' if in_double => Act::Poison("quotes inside `\"${ … }\"`".to_owned()),
                    _ => {
                        *empty = false;
                        match c {
                            '\\' if cs.get(i + 1).is_none() => Act::Backslash,
                            '\\' => Act::Adv(2),
                            '$' => dollar(cs, i, in_double),
                            '\'' => Act::Push(Frame::Single, 1),
                            '"' => Act::Push(Frame::Double, 1),
                            '`' => Act::Push(
                                Frame::Shell(ShellFrame::new(ShellKind::Backtick { in_double })),
                                1,
                            ),
                            _ => Act::Adv(1),
                        }
                    }
                }
            }
            Some(Frame::Arith { depth }) => step_arith(depth, cs, i, c),
            Some(Frame::Comment) => Act::Adv(1),
            Some(Frame::Heredoc(h)) => step_heredoc(h, cs, i, c),
        };
        if continuing && matches!(act, Act::Adv(1)) {
            self.name_run = true;
        }
        self.feed_parent_word(cs, i, &act);
        self.apply(act, i, cs.len())
    }

    fn apply(&mut self, act: Act, i: usize, len: usize) -> Result<usize, String> {
        match act {
            Act::Adv(n) => Ok(i + n),
            Act::Push(frame, n) => {
                if matches!(frame, Frame::Heredoc(_)) {
                    self.heredoc_gen += 1;
                }
                self.stack.push(frame);
                Ok(i + n)
            }
            Act::Pop(n) => {
                self.pop_frame();
                Ok(i + n)
            }
            Act::DollarName => {
                self.name_run = true;
                Ok(i + 1)
            }
            Act::Poison(reason) => {
                self.poison = Some(reason);
                Ok(len)
            }
            Act::Backslash => {
                self.pending_backslash = true;
                Ok(i + 1)
            }
            Act::Dollar => {
                self.pending_dollar = true;
                Ok(i + 1)
            }
            Act::Fail(m) => Err(m),
        }
    }

    /// Records text inside `'…'` / `"…"` in the dequoted word of the shell
    /// frame below, so that `'ev'al` or `"sh" -c` are still recognised.
    fn feed_parent_word(&mut self, cs: &[char], i: usize, act: &Act) {
        let n = self.stack.len();
        if n < 2 {
            return;
        }
        let double = match self.stack.last() {
            Some(Frame::Double) => true,
            Some(Frame::Single) => false,
            _ => return,
        };
        let Some(Frame::Shell(parent)) = self.stack.get_mut(n - 2) else {
            return;
        };
        match act {
            Act::Pop(_) => {}
            Act::Adv(k) if !(double && cs.get(i) == Some(&'$') && *k > 1) => {
                let chunk = cs.get(i..i + k).unwrap_or(&[]);
                match chunk {
                    ['\\', e] if double => {
                        if !matches!(e, '$' | '`' | '"' | '\\' | '\n') {
                            parent.word.push('\\');
                        }
                        if *e != '\n' {
                            parent.word.push(*e);
                        }
                    }
                    _ => parent.word.extend(chunk),
                }
            }
            _ => {
                parent.taint_word();
                // `"$@"` and `"${arr[@]}"` vanish when empty, even quoted.
                if double && cs.get(i) == Some(&'$') && matches!(la(cs, i, 1).0, Some('@' | '{')) {
                    parent.word_unquoted_exp = true;
                }
            }
        }
    }

    fn pop_frame(&mut self) {
        if self.stack.len() <= 1 {
            return;
        }
        match self.stack.pop() {
            Some(Frame::Shell(s)) if !s.pending.is_empty() || s.delim.is_some() => {
                self.poison =
                    Some("here-document not started before the end of `$( … )`".to_owned());
            }
            Some(Frame::Heredoc(_)) => {
                if let Some(Frame::Shell(owner)) = self.stack.last_mut()
                    && let Some(spec) = owner.pending.pop_front()
                {
                    self.heredoc_gen += 1;
                    self.stack.push(Frame::Heredoc(HeredocBody {
                        spec,
                        line: String::new(),
                        line_has_expr: false,
                    }));
                }
            }
            _ => {}
        }
    }

    /// Decides how a value landing at the current position must be escaped.
    fn plan(&self) -> Result<Plan, String> {
        if let Some(p) = &self.poison {
            return Err(format!(
                "the shell text before it uses a construct whose quoting cannot be tracked safely ({p}); pass the value in an environment variable, or use `| raw`"
            ));
        }
        if self.pending_backslash {
            return Err("it directly follows a backslash".to_owned());
        }
        if self.pending_dollar {
            return Err("it directly follows `$`".to_owned());
        }
        let mut restrict = Restrict::None;
        let mut backtick = false;
        for f in &self.stack {
            match f {
                Frame::Shell(s) => {
                    if matches!(s.kind, ShellKind::Backtick { .. }) {
                        backtick = true;
                    }
                    match s.danger {
                        Some(Danger::Reparse(why) | Danger::Names(why)) => {
                            restrict.tighten(Restrict::SafeChars(why));
                        }
                        Some(Danger::Arith(why)) => restrict.tighten(Restrict::Integer(why)),
                        None => {}
                    }
                    if let Slot::Armed(why) | Slot::InWord(why) = s.slot {
                        restrict.tighten(Restrict::SafeChars(why));
                    }
                    if s.redir_dup {
                        restrict.tighten(Restrict::SafeChars(
                            "bash expands the target of `>&` / `<&` twice when it is not a number",
                        ));
                    }
                }
                Frame::Arith { .. } => {
                    restrict.tighten(Restrict::Integer("arithmetic expansion"));
                }
                Frame::Param { .. } => {
                    restrict.tighten(Restrict::SafeChars("inside `${ … }`"));
                }
                Frame::Heredoc(h) if h.spec.reparse => restrict.tighten(Restrict::SafeChars(
                    "the here-document is fed to a shell or ssh",
                )),
                _ => {}
            }
        }
        let base = match self.stack.last() {
            None => Base::Word,
            Some(Frame::Shell(s)) => {
                if s.delim.is_some() {
                    return Err("a here-document delimiter cannot contain an expression".to_owned());
                }
                Base::Word
            }
            Some(Frame::Double) => Base::Double,
            Some(Frame::Single) => Base::Single,
            Some(Frame::AnsiC) => return Err("it is inside `$'…'` quoting".to_owned()),
            Some(Frame::Param { empty: true, .. }) => {
                return Err("it would be a parameter name in `${ … }`".to_owned());
            }
            Some(Frame::Param { .. } | Frame::Arith { .. }) => Base::Inert,
            Some(Frame::Comment) => Base::Comment,
            Some(Frame::Heredoc(h)) => {
                if h.spec.quoted {
                    Base::HeredocQuoted
                } else {
                    Base::HeredocUnquoted
                }
            }
        };
        // The word the value becomes part of (possibly inside quotes).
        let word_frame = match self.stack.as_slice() {
            [.., Frame::Shell(s)] | [.., Frame::Shell(s), Frame::Single | Frame::Double] => Some(s),
            _ => None,
        };
        if let Some(s) = word_frame {
            if s.cmd_pos && s.in_word && is_open_subscript(&s.word) {
                restrict.tighten(Restrict::Integer("array subscript"));
            }
            if s.saw_decl && !(s.in_word && s.word.contains('=')) {
                restrict.tighten(Restrict::SafeChars(
                    "bash evaluates array subscripts in declared variable names",
                ));
            }
        }
        if self.name_run && matches!(base, Base::HeredocUnquoted | Base::Inert) {
            return Err("it directly follows a `$name` expansion".to_owned());
        }
        Ok(Plan {
            base,
            restrict,
            backtick,
        })
    }

    /// Escapes `value` for the current position and records it.
    fn emit(&mut self, value: &str) -> Result<String, String> {
        let plan = self.plan()?;
        if value.contains('\0') {
            return Err("the value contains a NUL byte".to_owned());
        }
        match plan.restrict {
            Restrict::None => {}
            Restrict::SafeChars(why) => {
                let ok = value.chars().all(is_safe_char)
                    && (!value.starts_with('-') || is_integer(value));
                if !ok {
                    return Err(format!(
                        "{why}, so only values made of letters, digits and `_.,:/@%+-` (not starting with `-`) are allowed"
                    ));
                }
            }
            Restrict::Integer(why) => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                if !is_integer(value) || (digits.len() > 1 && digits.starts_with('0')) {
                    return Err(format!(
                        "{why}: only plain integers (without leading zeros) are allowed"
                    ));
                }
            }
        }
        let mut text = match plan.base {
            Base::Word => quote_word(value),
            Base::Double => {
                let esc = escape_with(value, &['\\', '"', '$', '`']);
                if self.name_run
                    && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                {
                    // `"$HOME""value"`: stop the variable name from absorbing the value.
                    format!("\"\"{esc}")
                } else {
                    esc
                }
            }
            Base::Single => value.replace('\'', "'\\''"),
            Base::Comment => {
                if value.contains('\n') {
                    return Err(
                        "it is inside a `#` comment and the value contains a newline".to_owned(),
                    );
                }
                value.to_owned()
            }
            Base::HeredocQuoted => value.to_owned(),
            Base::HeredocUnquoted => escape_with(value, &['\\', '$', '`']),
            Base::Inert => {
                if matches!(plan.restrict, Restrict::Integer(_)) && value.starts_with('-') {
                    format!("({value})")
                } else {
                    value.to_owned()
                }
            }
        };
        if plan.backtick {
            text = escape_with(&text, &['\\', '`', '$']);
        }
        self.track_heredoc(&text)?;
        self.mark_emitted();
        Ok(text)
    }

    /// A reference to environment variable `var` (which holds a secret) for the current
    /// position: the shell expands it, so the value itself never appears in the command line.
    fn emit_env_ref(&mut self, var: &str) -> Result<String, String> {
        let plan = self.plan()?;
        if !matches!(plan.restrict, Restrict::None) {
            return Err(
                "a secret cannot be used where the text is read again as code (`sh -c`, `eval`, `ssh`, arithmetic, …); use $CLAW_SECRET_<NAME> inside that code instead".to_owned(),
            );
        }
        let mut text = match plan.base {
            Base::Word => format!("\"${{{var}}}\""),
            Base::Double | Base::HeredocUnquoted => format!("${{{var}}}"),
            Base::Single => format!("'\"${{{var}}}\"'"),
            Base::HeredocQuoted => {
                return Err("a secret cannot be used in a quoted here-document, where variables do not expand".to_owned());
            }
            Base::Comment => return Err("a secret has no place in a comment".to_owned()),
            Base::Inert => return Err("a secret cannot be used here".to_owned()),
        };
        if plan.backtick {
            text = escape_with(&text, &['\\', '`', '$']);
        }
        self.track_heredoc(&text)?;
        self.mark_emitted();
        Ok(text)
    }

    /// Feeds substituted text to the here-document line tracker.
    fn track_heredoc(&mut self, text: &str) -> Result<(), String> {
        let Some(h) = self.heredoc_index() else {
            return Ok(());
        };
        let is_top = h + 1 == self.stack.len();
        let Some(Frame::Heredoc(body)) = self.stack.get_mut(h) else {
            return Ok(());
        };
        if !is_top {
            if text.contains('\n') {
                return Err(
                    "the value contains a newline inside a nested construct of a here-document"
                        .to_owned(),
                );
            }
            body.line.push_str(text);
            body.line_has_expr = true;
            return Ok(());
        }
        for c in text.chars() {
            if c == '\n' {
                if let Act::Fail(m) = heredoc_line_end(body, true) {
                    return Err(m);
                }
            } else {
                if c == '\t' && body.spec.strip_tabs && body.line.chars().all(|x| x == '\t') {
                    return Err(
                        "a line of the value would start with a tab, which `<<-` strips".to_owned(),
                    );
                }
                body.line.push(c);
                body.line_has_expr = true;
            }
        }
        Ok(())
    }

    /// Updates word state after a value was placed at the current position.
    fn mark_emitted(&mut self) {
        self.name_run = false;
        match self.stack.last_mut() {
            Some(Frame::Shell(f)) => f.taint_word(),
            Some(Frame::Single | Frame::Double) => {
                let n = self.stack.len();
                if let Some(Frame::Shell(parent)) = self.stack.get_mut(n.saturating_sub(2)) {
                    parent.taint_word();
                }
            }
            Some(Frame::Param { empty, .. }) => *empty = false,
            Some(Frame::Heredoc(h)) => h.line_has_expr = true,
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on setup failures
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "claw-expr-test-{}-{tag}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `/bin/sh`, plus bash and dash when installed.
    fn shells() -> Vec<&'static str> {
        let mut v = vec!["/bin/sh"];
        for s in ["bash", "dash"] {
            if Command::new(s)
                .args(["-c", "true"])
                .status()
                .is_ok_and(|st| st.success())
            {
                v.push(s);
            }
        }
        v
    }

    fn run(shell: &str, cmd: &str, dir: &Path, v: &str) -> (Vec<u8>, bool) {
        let out = Command::new(shell)
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .env("V", v)
            .env("HOME", "/nonexistent-home")
            .output()
            .unwrap();
        (out.stdout, out.status.success())
    }

    fn ctx_v(v: &str) -> Value {
        Value::from(minijinja::value::Serde(
            serde_json::json!({ "params": { "v": v } }),
        ))
    }

    fn hostile(pwned: &str) -> Vec<String> {
        let raw = [
            "",
            " ",
            "plain",
            "two words",
            "  lead and trail  ",
            "\t tab",
            "'",
            "\"",
            "\\",
            "\\\\",
            "''",
            "\"\"",
            "'\\''",
            "\\'",
            "\\\"",
            "a'b\"c$d`e\\f",
            "$HOME",
            "${HOME}",
            "$(id)",
            "`id`",
            "$((1+1))",
            "$'\\x41'",
            "; touch P #",
            "\"; touch P #",
            "'; touch P #",
            "$(touch P)",
            "`touch P`",
            "\"$(touch P)\"",
            "'$(touch P)'",
            "\\$(touch P)",
            "\\`touch P\\`",
            "'`touch P`'",
            "\"`touch P`\"",
            "\n touch P\n",
            "a\ntouch P",
            "&& touch P",
            "| touch P",
            "> P",
            "< /etc/passwd",
            "*",
            "?",
            "[a-z]*",
            "~",
            "~root",
            "!",
            "!!",
            "#",
            "# comment",
            "{a,b}",
            "}",
            "}}",
            ")",
            "(",
            "${{ params.v }}",
            "{{.Names}}",
            "-n",
            "-e",
            "--",
            "%s%s",
            "\\n",
            "\\c",
            "\\x41",
            "\r\n",
            "trailing\n",
            "\n\nlead",
            "héllo wörld ✓ 日本語 🎉",
            "EOF",
            "x\nEOF\ntouch P\nEOF\n",
            "\tEOF",
            "EOF\n",
            "a\\\nb",
            "\\\n",
            "42",
            "-7",
            "007",
            "user@host.example:22",
            "a=b",
            "$IFS",
            "\\\\\\`",
            "\"'\"'\"",
            "'$V'",
            "x'\n'y",
        ];
        raw.iter().map(|s| s.replace('P', pwned)).collect()
    }

    fn trim_nl(v: &str) -> String {
        v.trim_end_matches('\n').to_owned()
    }

    fn has_line(v: &str, delim: &str) -> bool {
        v.split('\n').any(|l| l == delim)
    }

    fn safe(v: &str) -> bool {
        v.chars().all(is_safe_char) && (!v.starts_with('-') || is_integer(v))
    }

    type ExactFn = fn(&str) -> Option<String>;

    enum Expect {
        /// Expected stdout, or `None` if rendering must fail.
        Exact(ExactFn),
        /// Same stdout and status as this reference command, which uses `"$V"`.
        Same(&'static str),
    }

    const CASES: &[(&str, Expect)] = &[
        (
            "printf '%s' ${{ params.v }}",
            Expect::Exact(|v| Some(v.to_owned())),
        ),
        (
            "printf '%s' \"${{ params.v }}\"",
            Expect::Exact(|v| Some(v.to_owned())),
        ),
        (
            "printf '%s' '${{ params.v }}'",
            Expect::Exact(|v| Some(v.to_owned())),
        ),
        (
            "printf '%s' pre${{ params.v }}post",
            Expect::Exact(|v| Some(format!("pre{v}post"))),
        ),
        (
            "printf '%s' ${{ params.v }}${{ params.v }}",
            Expect::Exact(|v| Some(format!("{v}{v}"))),
        ),
        (
            "printf '%s' '${{ params.v }}'\"${{ params.v }}\"${{ params.v }}",
            Expect::Exact(|v| Some(format!("{v}{v}{v}"))),
        ),
        (
            "printf '%s' \"a $(printf '%s' ${{ params.v }}) b\"",
            Expect::Exact(|v| Some(format!("a {} b", trim_nl(v)))),
        ),
        (
            "printf '%s' \"$(printf '%s' \"$(printf '%s' ${{ params.v }})\")\"",
            Expect::Exact(|v| Some(trim_nl(v))),
        ),
        (
            "printf '%s' \"$(printf '%s' \"${{ params.v }}\")\"",
            Expect::Exact(|v| Some(trim_nl(v))),
        ),
        (
            "printf '%s' \"`printf '%s' ${{ params.v }}`\"",
            Expect::Exact(|v| Some(trim_nl(v))),
        ),
        (
            "printf '%s' \"`printf '%s' '${{ params.v }}'`\"",
            Expect::Exact(|v| Some(trim_nl(v))),
        ),
        (
            "x=`printf '%s' \"${{ params.v }}\"`; printf '%s' \"$x\"",
            Expect::Exact(|v| Some(trim_nl(v))),
        ),
        (
            "x=${{ params.v }}; printf '%s' \"$x\"",
            Expect::Exact(|v| Some(v.to_owned())),
        ),
        (
            "export X=${{ params.v }}; printf '%s' \"$X\"",
            Expect::Exact(|v| Some(v.to_owned())),
        ),
        (
            "Y=abc; printf '%s' \"$Y${{ params.v }}\"",
            Expect::Exact(|v| Some(format!("abc{v}"))),
        ),
        (
            "Y=abc; printf '%s' $Y${{ params.v }}",
            Expect::Exact(|v| Some(format!("abc{v}"))),
        ),
        (
            "f() { printf '%s' \"$1\"; }; f ${{ params.v }} | cat",
            Expect::Exact(|v| Some(v.to_owned())),
        ),
        (
            "printf '%s' ok # ${{ params.v }}",
            Expect::Exact(|v| (!v.contains('\n')).then(|| "ok".to_owned())),
        ),
        (
            "printf '%s' \"$(printf '%s' ok # ${{ params.v }}\n)\"",
            Expect::Exact(|v| (!v.contains('\n')).then(|| "ok".to_owned())),
        ),
        (
            "cat <<EOF\n${{ params.v }}\nEOF",
            Expect::Exact(|v| (!has_line(v, "EOF")).then(|| format!("{v}\n"))),
        ),
        (
            "cat <<'EOF'\n${{ params.v }}\nEOF",
            Expect::Exact(|v| (!has_line(v, "EOF")).then(|| format!("{v}\n"))),
        ),
        (
            "cat <<\"EOF\"\npre ${{ params.v }} post\nEOF\nprintf '%s' done",
            Expect::Exact(|v| {
                let body = format!("pre {v} post");
                (!has_line(&body, "EOF")).then(|| format!("{body}\ndone"))
            }),
        ),
        (
            "cat <<\\EOF; printf '%s' after\n${{ params.v }}\nEOF\nprintf '%s' ${{ params.v }}",
            Expect::Exact(|v| (!has_line(v, "EOF")).then(|| format!("{v}\nafter{v}"))),
        ),
        (
            "cat <<A; cat <<'B'\n${{ params.v }}\nA\n${{ params.v }}\nB\n",
            Expect::Exact(|v| {
                (!has_line(v, "A") && !has_line(v, "B")).then(|| format!("{v}\n{v}\n"))
            }),
        ),
        (
            "cat <<-EOF\n\t${{ params.v }}\n\tEOF",
            Expect::Exact(|v| {
                let bad = v.split('\n').any(|l| l.starts_with('\t') || l == "EOF");
                (!bad).then(|| format!("{v}\n"))
            }),
        ),
        (
            "printf '%s' \"$(cat <<'EOF'\n${{ params.v }}\nEOF\n)\"",
            Expect::Exact(|v| (!has_line(v, "EOF")).then(|| trim_nl(v))),
        ),
        (
            "printf '%s' \"$(cat <<EOF\n${{ params.v }}\nEOF\n)\"",
            Expect::Exact(|v| (!has_line(v, "EOF")).then(|| trim_nl(v))),
        ),
        (
            "cat <<EOF\n$(printf '%s' ${{ params.v }})\nEOF",
            Expect::Exact(|v| (!v.contains('\n')).then(|| format!("{v}\n"))),
        ),
        (
            "printf '%s' \"${UNSET_X:-${{ params.v }}}\"",
            Expect::Exact(|v| safe(v).then(|| v.to_owned())),
        ),
        (
            "printf '%s' ${UNSET_X:-${{ params.v }}}",
            Expect::Exact(|v| safe(v).then(|| v.to_owned())),
        ),
        (
            "eval \"printf '%s' ${{ params.v }}\"",
            Expect::Exact(|v| safe(v).then(|| v.to_owned())),
        ),
        (
            "sh -c \"printf '%s' ${{ params.v }}\"",
            Expect::Exact(|v| safe(v).then(|| v.to_owned())),
        ),
        (
            "sh -c 'printf \"%s\" \"$1\"' sh ${{ params.v }}",
            Expect::Exact(|v| Some(v.to_owned())),
        ),
        (
            "sh <<EOF\nprintf '%s' ${{ params.v }}\nEOF",
            Expect::Exact(|v| safe(v).then(|| v.to_owned())),
        ),
        (
            "printf '%s' $(( ${{ params.v }} + 1 ))",
            Expect::Exact(|v| {
                let ok = is_integer(v) && !v.trim_start_matches('-').starts_with('0');
                ok.then(|| {
                    v.parse::<i64>()
                        .map(|n| (n + 1).to_string())
                        .unwrap_or_default()
                })
            }),
        ),
        ("printf '%s' $'${{ params.v }}'", Expect::Exact(|_| None)),
        ("printf '%s' \\${{ params.v }}", Expect::Exact(|_| None)),
        ("printf '%s' $${{ params.v }}", Expect::Exact(|_| None)),
        ("cat <<${{ params.v }}\nx\n", Expect::Exact(|_| None)),
        (
            "printf '%s' `printf '%s' \\\\ ${{ params.v }}`",
            Expect::Exact(|_| None),
        ),
        ("echo ${{ params.v }}", Expect::Same("echo \"$V\"")),
        ("echo \"${{ params.v }}\"", Expect::Same("echo \"$V\"")),
        ("echo '${{ params.v }}'", Expect::Same("echo \"$V\"")),
        (
            "echo pre${{ params.v }}post",
            Expect::Same("echo pre\"$V\"post"),
        ),
        (
            "echo \"a $(echo ${{ params.v }}) b\"",
            Expect::Same("echo \"a $(echo \"$V\") b\""),
        ),
        (
            "echo `echo ${{ params.v }}`",
            Expect::Same("echo `echo \"$V\"`"),
        ),
        (
            "printf '[%s]' `printf '%s' ${{ params.v }}`",
            Expect::Same("printf '[%s]' `printf '%s' \"$V\"`"),
        ),
        (
            "printf '[%s]' $(printf '%s' ${{ params.v }})",
            Expect::Same("printf '[%s]' $(printf '%s' \"$V\")"),
        ),
        (
            "x=${{ params.v }}; echo \"$x\"",
            Expect::Same("x=$V; echo \"$x\""),
        ),
    ];

    #[test]
    fn shell_rendering_is_safe_for_hostile_values() {
        let ev = Evaluator::new();
        let dir = TempDir::new("hostile");
        let pwned = dir.0.join("pwned");
        let pwned_s = pwned.to_str().unwrap().to_owned();
        let values = hostile(&pwned_s);
        let mut checked = 0;
        for shell in shells() {
            for (tpl, expect) in CASES {
                for v in &values {
                    let rendered = ev.render_shell(tpl, &ctx_v(v));
                    let what = format!("shell {shell}, template {tpl:?}, value {v:?}");
                    match expect {
                        Expect::Exact(f) => match (f(v), rendered) {
                            (Some(want), Ok(cmd)) => {
                                let (out, ok) = run(shell, &cmd, &dir.0, v);
                                assert!(ok, "{what}: command failed: {cmd:?}");
                                assert_eq!(
                                    String::from_utf8_lossy(&out),
                                    want,
                                    "{what}: rendered {cmd:?}"
                                );
                            }
                            (None, Err(_)) => {}
                            (Some(_), Err(e)) => panic!("{what}: unexpected error: {e}"),
                            (None, Ok(cmd)) => panic!("{what}: expected an error, got {cmd:?}"),
                        },
                        Expect::Same(reference) => {
                            let cmd = rendered.unwrap_or_else(|e| panic!("{what}: {e}"));
                            let got = run(shell, &cmd, &dir.0, v);
                            let want = run(shell, reference, &dir.0, v);
                            assert_eq!(got, want, "{what}: rendered {cmd:?}");
                        }
                    }
                    assert!(!pwned.exists(), "{what}: injected command ran");
                    assert!(
                        std::fs::read_dir(&dir.0).unwrap().next().is_none(),
                        "{what}: a file appeared in the work dir"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
    }

    #[test]
    fn restricted_contexts_render_only_inert_values() {
        let ev = Evaluator::new();
        let ok = |tpl: &str, v: &str| ev.render_shell(tpl, &ctx_v(v));
        assert_eq!(
            ok("ssh host ${{ params.v }}", "uptime").unwrap(),
            "ssh host 'uptime'"
        );
        assert!(ok("ssh host ${{ params.v }}", "ls; rm -rf /").is_err());
        assert!(ok("ssh ${{ params.v }} uptime", "-oProxyCommand=x").is_err());
        assert!(ok("ssh host \"ls ${{ params.v }}\"", "$(id)").is_err());
        assert!(ok("ssh host \"ls $(echo ${{ params.v }})\"", "a b").is_err());
        assert!(ok("ssh host <<'EOF'\necho ${{ params.v }}\nEOF", "a;b").is_err());
        assert!(ok("cat <<'EOF' | sh\necho ${{ params.v }}\nEOF", "a;b").is_err());
        assert!(ok("docker exec c sh -c \"echo ${{ params.v }}\"", "a;b").is_err());
        assert!(ok("docker exec c bash -ec \"echo ${{ params.v }}\"", "a;b").is_err());
        // after the command ends, quoting alone is enough again
        assert!(ok("ssh host uptime; echo ${{ params.v }}", "a;b").is_ok());
        assert!(ok("[[ $x == ${{ params.v }} ]]", "a[$(id)]").is_err());
        assert!(ok("[[ $x == y && $y -eq ${{ params.v }} ]]", "a[$(id)]").is_err());
        assert!(ok("[[ $x == y ]] && echo ${{ params.v }}", "a[$(id)]").is_ok());
        assert!(ok("(( x = ${{ params.v }} ))", "a[$(id)]").is_err());
        assert_eq!(
            ok("(( x = ${{ params.v }} ))", "-3").unwrap(),
            "(( x = (-3) ))"
        );
        assert!(ok("let x=${{ params.v }}", "a[$(id)]").is_err());
        assert!(ok("declare -i x=${{ params.v }}", "a[$(id)]").is_err());
        assert!(ok("arr[${{ params.v }}]=1", "a[$(id)]").is_err());
        assert!(ok("echo $[ ${{ params.v }} ]", "a[$(id)]").is_err());
        assert!(ok("trap 'echo ${{ params.v }}' EXIT", "$(id)").is_err());
        assert!(ok("eval ${{ params.v }}", "ls").is_ok());
        assert!(ok("echo $x${{ params.v }}", "y").is_ok());
        assert!(ok("echo \"${x}${{ params.v }}\"", "y").is_ok());
        assert!(ok("echo \"${${{ params.v }}}\"", "PATH").is_err());
        // NUL cannot be passed to sh -c
        assert!(ok("echo ${{ params.v }}", "a\0b").is_err());
        // untrackable constructs poison the rest of the command
        assert!(ok("x=$(case a in a) echo;; esac); echo ${{ params.v }}", "y").is_err());
        assert!(ok("echo `echo \\`echo\\``; echo ${{ params.v }}", "y").is_err());
        assert!(ok("echo $'a\\'b'; echo ${{ params.v }}", "y").is_err());
        assert!(ok("echo $'a\\nb'; echo ${{ params.v }}", "y").is_ok());
        assert!(ok("cat <<EOF\na\\\nEOF\nEOF\necho ${{ params.v }}", "y").is_err());
        // raw opts out of everything
        assert_eq!(
            ok("ssh host ${{ params.v | raw }}", "ls; id").unwrap(),
            "ssh host ls; id"
        );
    }

    /// Runs `shell -c cmd` in `dir` with a time limit; returns stdout and success.
    fn run_limited(shell: &str, cmd: &str, dir: &Path) -> (Vec<u8>, bool) {
        use std::io::Read;
        let mut child = Command::new(shell)
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .env("x", "")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if start.elapsed() > std::time::Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let mut out = Vec::new();
        if let Some(mut so) = child.stdout.take() {
            let _ = so.read_to_end(&mut out);
        }
        (out, status.is_some_and(|s| s.success()))
    }

    /// Templates (with `${{ v }}`) and values that once rendered into an
    /// injection under bash or dash, found by fuzzing. Each must now either
    /// be refused or run without side effect.
    const REGRESSIONS: &[(&str, &str)] = &[
        (" \\\neval ${{ v }}", "}$(touch P)"),
        ("$[<<EOF\n ]]')\n${{ v }}", "}$(touch P)"),
        ("EOF\n\\sh -c ${{ v }}", "\\';touch P;#"),
        ("sh -c $x ]]${{ v }}", "`touch P`"),
        ("\\eval ${{ v }}", "`touch P`"),
        ("\\eval \\\n${{ v }}", "$(touch P)"),
        ("`|`eval echo ${{ v }}", "EOF\ntouch P"),
        ("$()sh -c ${{ v }}", "\"$(touch P)\""),
        ("x=(eval ;; esac\t${{ v }}", "\nEOF\ntouch P\n"),
        ("#$[((sh -c eval \t]<<'EOF'\nx=(())a${{ v }}", "\ntouch P\n"),
        (
            "$\\\n'let }\\\n$[\tEOF\necho ()ssh ${{ v }}",
            "\\';touch P;#",
        ),
        ("echo $\\\n${{ v }}", "\\';touch P;#"),
        ("x=2>&1?${{ v }}", ")$(touch P)"),
        ("echo x >&${{ v }}", "$(touch P)"),
        (" echo $\\\n2>&1${{ v }} done", "a[$(touch P)]"),
        ("\"$@\" eval ${{ v }}", "\\\\$(touch P)"),
        (
            "EOF[ { |a) <<'EOF'\n;; ()) ]] do echo ${{ v }}",
            "}$(touch P)",
        ),
        ("2>&1\teval ${{ v }}", "a[$(touch P)]"),
        (
            "$x{ =}$\\\nfunction f $}EOF\n\t*sh -c }${{ v }}",
            "a[$(touch P)]",
        ),
        ("a do if % ]--esac<(\tlet )# do |${{ v }}", "\\';touch P;#"),
        ("\\\neval sh -c <()${{ v }}", ";touch P;"),
        ("sh -c $\\\n2>&1while ${{ v }}", "`touch P`"),
        ("sh -c -- fi${{ v }}", "\\\";touch P;#"),
        ("sh -c -o errexit ${{ v }}", ";touch P;"),
        ("test -v ${{ v }}", "a[$(touch P)]"),
        ("printf -v ${{ v }} x", "a[$(touch P)]"),
        ("read ${{ v }} </dev/null", "a[$(touch P)]"),
        ("f() { local ${{ v }}=1; }; f", "a[$(touch P)]"),
        ("a['${{ v }}']=1", "$(touch P)"),
        ("x=abc; echo \"${x:0:${{ v }}}\"", "a[$(touch P)]"),
        ("ssh host &>/dev/null ${{ v }}", ";touch P"),
    ];

    #[test]
    fn fuzzing_regressions_stay_fixed() {
        let ev = Evaluator::new();
        let dir = TempDir::new("regress");
        let pwned = dir.0.join("pwned");
        let p = pwned.to_str().unwrap();
        for shell in shells() {
            for (tpl, value) in REGRESSIONS {
                let v = value.replace('P', p);
                let ctx = Value::from(minijinja::value::Serde(serde_json::json!({ "v": v })));
                if let Ok(cmd) = ev.render_shell(tpl, &ctx) {
                    run_limited(shell, &cmd, &dir.0);
                    assert!(!pwned.exists(), "{shell}: {tpl:?} with {v:?} → {cmd:?}");
                }
            }
        }
    }

    /// A small deterministic fuzz: random shell fragments around `${{ v }}`
    /// with injection payloads; a rendered command must never run them.
    #[test]
    fn random_templates_never_inject() {
        const FRAGS: &[&str] = &[
            "echo ",
            " ",
            "'",
            "\"",
            "`",
            "$(",
            ")",
            "${",
            "}",
            "\\",
            "#",
            "\n",
            "<<EOF\n",
            "<<'EOF'\n",
            "<<-EOF\n\t",
            "EOF\n",
            ";",
            "|",
            "&&",
            "x=",
            "eval ",
            "sh -c ",
            "(",
            "((",
            "))",
            "$((",
            "case ",
            " in ",
            "a) ",
            ";; esac",
            "$'",
            "{",
            "${{ v }}",
            "${{ v }}",
            "${{ v }}",
            "a",
            "$",
            "\t",
            "<<",
            "ssh ",
            "[[ ",
            " ]]",
            "let ",
            "\\\n",
            "$x",
            "$[",
            "]",
            "{ ",
            " }",
            "if ",
            " then ",
            " fi",
            "[ ",
            "+=",
            "<(",
            "&>",
            "! ",
            "\"$@\"",
            "${x:-",
            "${#",
            "%",
            "?",
            "*",
            "=",
            "-",
            "--",
            "2>&1",
            "f() ",
            "\"$(",
            "\"`",
            "'\\''",
            "$\\\n",
            "-v ",
            "read ",
            "printf ",
            ">&",
        ];
        let ev = Evaluator::new();
        let dir = TempDir::new("fuzz");
        let pwned = dir.0.join("pwned");
        let p = pwned.to_str().unwrap();
        let payloads: Vec<String> = REGRESSIONS.iter().map(|(_, v)| v.replace('P', p)).collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % n as u64).unwrap()
        };
        let shells = shells();
        let mut rendered = 0;
        for _ in 0..1500 {
            let mut tpl = String::new();
            for _ in 0..2 + rnd(14) {
                tpl.push_str(FRAGS[rnd(FRAGS.len())]);
            }
            if !tpl.contains("${{") {
                tpl.push_str("${{ v }}");
            }
            let v = &payloads[rnd(payloads.len())];
            let ctx = Value::from(minijinja::value::Serde(serde_json::json!({ "v": v })));
            if let Ok(cmd) = ev.render_shell(&tpl, &ctx) {
                rendered += 1;
                let shell = shells[rnd(shells.len())];
                run_limited(shell, &cmd, &dir.0);
                assert!(!pwned.exists(), "{shell}: {tpl:?} with {v:?} → {cmd:?}");
            }
            // keep the work dir empty so that globs stay predictable
            for entry in std::fs::read_dir(&dir.0).unwrap().flatten() {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
        assert!(rendered > 200, "only {rendered} templates rendered");
    }

    #[test]
    fn check_shell_template_reports_static_problems() {
        let ev = Evaluator::new();
        assert!(
            ev.check_shell_template("echo ${{ a }} \"${{ b }}\"")
                .is_empty()
        );
        let errs = ev.check_shell_template("echo $'${{ a }}' ok ${{ b +  }}");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].offset, Some(7));
        assert_eq!(errs[1].offset, Some(20));
        assert_eq!(
            ev.check_shell_template("cat <<EOF\n${{ a }}EOF\nEOF").len(),
            1
        );
        assert!(
            ev.check_shell_template("cat <<EOF\n${{ a }}\nEOF\n")
                .is_empty()
        );
    }

    #[test]
    fn go_templates_are_untouched() {
        let ev = Evaluator::new();
        let tpl = "docker ps --format '{{.Names}}' | grep {{ x }} ${{ params.v }}";
        let ctx = ctx_v("web");
        assert_eq!(
            ev.render_shell(tpl, &ctx).unwrap(),
            "docker ps --format '{{.Names}}' | grep {{ x }} 'web'"
        );
        assert_eq!(
            ev.render_plain(tpl, &ctx).unwrap(),
            "docker ps --format '{{.Names}}' | grep {{ x }} web"
        );
        assert!(!has_expressions("echo {{ .Names }} $HOME ${HOME}"));
        assert_eq!(
            parse_template("a {{b}} c").unwrap(),
            vec![Segment::Lit("a {{b}} c".to_owned())]
        );
        // values are never re-parsed as templates
        assert_eq!(
            ev.render_plain("${{ params.v }}", &ctx_v("${{ params.v }}"))
                .unwrap(),
            "${{ params.v }}"
        );
    }

    #[test]
    fn parse_finds_matching_close() {
        let segs = parse_template("a ${{ \"}}\" }} b ${{ x | raw }}").unwrap();
        assert_eq!(segs.len(), 4);
        assert_eq!(
            segs[1],
            Segment::Expr(ExprRef {
                start: 2,
                end: 13,
                source: "\"}}\"".to_owned(),
                raw: false
            })
        );
        assert_eq!(
            segs[3],
            Segment::Expr(ExprRef {
                start: 16,
                end: 30,
                source: "x".to_owned(),
                raw: true
            })
        );
        let ev = Evaluator::new();
        let ctx = Value::from(());
        assert_eq!(ev.render_plain("${{ \"}}\" }}", &ctx).unwrap(), "}}");
        assert_eq!(ev.render_plain("${{ '\\'}}' }}", &ctx).unwrap(), "'}}");
        assert_eq!(
            ev.render_plain("${{ {'a': {'b': 1}} }}", &ctx).unwrap(),
            r#"{"a":{"b":1}}"#
        );
        assert_eq!(ev.render_plain("${{ 'x' }}}", &ctx).unwrap(), "x}");
    }

    #[test]
    fn unterminated_expression_reports_offset() {
        let e = parse_template("echo ${{ params.v").unwrap_err();
        assert_eq!(e.offset, Some(5));
        assert!(e.message.contains("unterminated"), "{e}");
        let e = parse_template("ok ${{ x }} then ${{ 'abc }}").unwrap_err();
        assert_eq!(e.offset, Some(17));
        let ev = Evaluator::new();
        let errs = ev.check_template("x ${{ y");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].offset, Some(2));
        let e = ev.render_shell("echo ${{", &Value::from(())).unwrap_err();
        assert_eq!(e.offset, Some(5));
    }

    fn steps_ctx() -> Value {
        Value::from(minijinja::value::Serde(serde_json::json!({
            "steps": {
                "git-pull": { "status": "ok", "outputs": { "sha": "abc123" } },
                "a": { "status": "failed", "outputs": {} },
                "build": { "outputs": { "version": "1.2.3" } },
            },
            "params": { "my-param": 5, "n": 7, "list": [1, "a", null], "map": {"k": true}, "nothing": null },
        })))
    }

    #[test]
    fn hyphenated_names() {
        let ev = Evaluator::new();
        let ctx = steps_ctx();
        assert_eq!(
            ev.render_plain("${{ steps.git-pull.outputs.sha }}", &ctx)
                .unwrap(),
            "abc123"
        );
        assert_eq!(
            ev.render_plain("${{ params.my-param + 1 }}", &ctx).unwrap(),
            "6"
        );
        assert_eq!(ev.render_plain("${{ params.n - 2 }}", &ctx).unwrap(), "5");
        assert_eq!(
            ev.render_plain("${{ 'steps.git-pull' ~ \"params.a-b\" }}", &ctx)
                .unwrap(),
            "steps.git-pullparams.a-b"
        );
        assert_eq!(
            rewrite_hyphens("steps.a-b.x == mysteps.c-d and x.params.e-f"),
            "steps[\"a-b\"].x == mysteps.c-d and x.params.e-f"
        );
        assert!(ev.truthy("steps.git-pull.status == 'ok'", &ctx).unwrap());
    }

    #[test]
    fn undefined_values_name_the_expression() {
        let ev = Evaluator::new();
        let ctx = steps_ctx();
        let e = ev
            .render_plain("v=${{ steps.build.outputs.vesion }}", &ctx)
            .unwrap_err();
        assert!(
            e.message
                .contains("`${{ steps.build.outputs.vesion }}` is undefined"),
            "{e}"
        );
        assert_eq!(e.offset, Some(2));
        assert_eq!(e.expr.as_deref(), Some("steps.build.outputs.vesion"));
        let e = ev
            .render_shell("echo ${{ steps.nope.outputs.x }}", &ctx)
            .unwrap_err();
        assert!(e.to_string().contains("steps.nope.outputs.x"), "{e}");
        // undefined may be tested
        assert!(!ev.truthy("steps.nope is defined", &ctx).unwrap());
        assert!(
            !ev.truthy("${{ steps.build.outputs.vesion }}", &ctx)
                .unwrap()
        );
        assert!(
            ev.eval("steps.build.outputs.vesion", &ctx)
                .unwrap()
                .is_undefined()
        );
    }

    #[test]
    fn truthy_conditions() {
        let ev = Evaluator::new();
        let ctx = steps_ctx();
        assert!(
            ev.truthy("${{ steps.a.status == 'failed' }}", &ctx)
                .unwrap()
        );
        assert!(ev.truthy("  steps.a.status == 'failed'  ", &ctx).unwrap());
        assert!(
            !ev.truthy("${{ steps.git-pull.status == 'failed' }}", &ctx)
                .unwrap()
        );
        assert!(!ev.truthy("params.nothing", &ctx).unwrap());
        assert!(ev.truthy("params.list", &ctx).unwrap());
        assert!(ev.truthy("${{ a }} and ${{ b }}", &ctx).is_err());
        assert!(ev.truthy("steps.a.status ==", &ctx).is_err());
    }

    #[test]
    fn value_formatting() {
        let ev = Evaluator::new();
        let ctx = steps_ctx();
        let r = |t: &str| ev.render_plain(t, &ctx).unwrap();
        assert_eq!(r("${{ params.list }}"), r#"[1,"a",null]"#);
        assert_eq!(r("${{ params.map }}"), r#"{"k":true}"#);
        assert_eq!(r("${{ range(3) }}"), "[0,1,2]");
        assert_eq!(r("${{ params.nothing }}"), "");
        assert_eq!(r("${{ true }}/${{ 1 == 2 }}"), "true/false");
        assert_eq!(r("${{ 1.5 }} ${{ 10 // 3 }}"), "1.5 3");
        assert_eq!(
            ev.render_shell("echo ${{ params.list }}", &ctx).unwrap(),
            r#"echo '[1,"a",null]'"#
        );
        assert_eq!(
            ev.render_shell("echo \"${{ params.list }}\"", &ctx)
                .unwrap(),
            r#"echo "[1,\"a\",null]""#
        );
    }

    #[test]
    fn raw_opts_out_of_escaping() {
        let ev = Evaluator::new();
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({ "params": { "cmd": "ls -l | wc -l" } }),
        ));
        assert_eq!(
            ev.render_shell("${{ params.cmd | raw }} && echo ${{ params.cmd }}", &ctx)
                .unwrap(),
            "ls -l | wc -l && echo 'ls -l | wc -l'"
        );
        assert_eq!(
            ev.render_shell("${{ params.cmd|raw }}", &ctx).unwrap(),
            "ls -l | wc -l"
        );
        assert_eq!(
            ev.render_plain("${{ params.cmd | raw }}", &ctx).unwrap(),
            "ls -l | wc -l"
        );
        // a `raw` that is not the filter stays part of the expression
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({ "raw": "r", "x": "y" }),
        ));
        assert_eq!(ev.render_shell("${{ raw }}", &ctx).unwrap(), "'r'");
        assert_eq!(ev.render_plain("${{ x ~ raw }}", &ctx).unwrap(), "yr");
        assert_eq!(
            ev.render_plain("${{ 'a | raw' }}", &ctx).unwrap(),
            "a | raw"
        );
    }

    #[test]
    fn hostile_expressions_are_bounded() {
        let ev = Evaluator::new();
        let ctx = Value::from(());
        let e = ev
            .render_plain("${{ range(100000000) | list | length }}", &ctx)
            .unwrap_err();
        assert!(e.message.contains("range"), "{e}");
        // deep nesting is refused before minijinja's recursive compiler sees it
        for src in [
            "-".repeat(5000) + "1",
            format!("1{}", " + 1".repeat(5000)),
            format!("x{}", ".a".repeat(5000)),
            format!("{}1{}", "(".repeat(5000), ")".repeat(5000)),
            format!("1{}", "|abs".repeat(5000)),
        ] {
            let e = ev.eval(&src, &ctx).unwrap_err();
            assert!(e.message.contains("too"), "{e}");
        }
        let e = ev
            .eval(&format!("'{}'", "a".repeat(MAX_EXPR_LEN)), &ctx)
            .unwrap_err();
        assert!(e.message.contains("too long"), "{e}");
        // fuel stops evaluation with an error
        let small = Evaluator::with_fuel(20);
        let sum = format!("x{}", " + x".repeat(100));
        let x1 = Value::from(minijinja::value::Serde(serde_json::json!({ "x": 1 })));
        let e = small.eval(&sum, &x1).unwrap_err();
        assert!(e.message.contains("fuel"), "{e}");
        assert_eq!(ev.eval(&sum, &x1).unwrap(), Value::from(101));
    }

    #[test]
    fn check_reports_syntax_errors() {
        let ev = Evaluator::new();
        assert!(ev.check("steps.a.outputs.x | default('y')").is_ok());
        assert!(ev.check("steps.git-pull.outputs.x | raw").is_ok());
        let e = ev.check("steps.a ==").unwrap_err();
        assert!(e.message.contains("`${{ steps.a == }}`"), "{e}");
        assert!(ev.check("").is_err());
        assert!(ev.check("| raw").is_err());
        let errs = ev.check_template("ok ${{ a }} bad ${{ a + }} ${{ )( }}");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].offset, Some(16));
        assert_eq!(errs[1].offset, Some(27));
        assert!(format!("{:?}", Evaluator::default()).contains("Evaluator"));
    }
}
