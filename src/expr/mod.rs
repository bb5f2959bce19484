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
//!   compiling, `steps.<name>`, `params.<name>` and `memory.<key>` whose name contains a hyphen
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
            if !after_dot
                && (ident == "steps" || ident == "params" || ident == "memory")
                && b.get(i) == Some(&b'.')
            {
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
        let mut state = ShellState::new(tpl);
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
        let mut state = ShellState::new(tpl);
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

mod refs;
pub use refs::{Reference, references};
mod shell;
use shell::{ShellState, shell_error};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on setup failures
mod tests;
