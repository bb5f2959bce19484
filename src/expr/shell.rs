//! The shell quoting state machine: tracks the quoting context of every `${{ }}` in a shell
//! command's literal text and escapes each value for the place it lands (see the module
//! documentation of [`crate::expr`]).

use std::collections::VecDeque;

use super::{ExprError, ExprRef, show};

pub(super) fn shell_error(r: &ExprRef, reason: &str) -> ExprError {
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
/// Programs whose `-c` argument is a command line run by a shell (besides the shells).
const C_RUNNERS: &[&str] = &["flock", "script", "runuser"];
/// Commands that read a file or their input as shell code: a here-document, here-string or
/// process substitution on their line is code, not data.
const SOURCE_WORDS: &[&str] = &["source", "."];
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
    /// … of `<<<`: a here-string, the command's input.
    redir_herestring: bool,
    /// `<( … )` / `>( … )`: what it prints (or reads) is a file another command reads.
    proc_subst: bool,
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
            redir_herestring: false,
            proc_subst: false,
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
            self.redir_herestring = false;
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
        if SHELL_WORDS.contains(&base) || C_RUNNERS.contains(&base) || self.word_glob {
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
            if SOURCE_WORDS.contains(&word.as_str()) {
                self.line_reparse = true;
            }
            match word.as_str() {
                "eval" => self.set_danger(Danger::Reparse("`eval` re-parses its arguments")),
                "alias" => self.set_danger(Danger::Reparse(
                    "an alias's value is re-parsed as shell code where the alias is used",
                )),
                "watch" => self.set_danger(Danger::Reparse(
                    "`watch` runs its arguments as a command line through `sh -c`",
                )),
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
            if self.saw_decl && flags.contains('n') {
                self.set_danger(Danger::Names(
                    "`declare -n` makes the value a variable name, whose array subscript bash evaluates",
                ));
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
        self.redir_herestring = false;
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
            let mut inner = ShellFrame::new(ShellKind::Subst);
            inner.proc_subst = true;
            Act::Push(Frame::Shell(inner), j1 + 1 - i)
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
                Some('<') => {
                    f.redir_herestring = true;
                    Act::Adv(j2 + 1 - i)
                }
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
            // `(( … ))`, and bash's `for (( init; test; step ))`: arithmetic.
            if (f.cmd_pos || f.cmd_name == "for") && n1 == Some('(') {
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
pub(super) struct Plan {
    base: Base,
    restrict: Restrict,
    backtick: bool,
}

pub(super) fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

pub(super) fn is_safe_char(c: char) -> bool {
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
pub(super) struct ShellState {
    stack: Vec<Frame>,
    poison: Option<String>,
    pending_backslash: bool,
    pending_dollar: bool,
    /// A `$name` expansion is being read (a value starting with a name
    /// character would extend the name).
    name_run: bool,
    heredoc_gen: u64,
    /// Per line of the template: whether a word on it names a program that reads text as
    /// shell code (a shell, `source`, `eval`, …), wherever on the line it is.
    reader_lines: Vec<bool>,
    /// The template line being read (counted in the literal text only).
    line: usize,
}

/// Whether a line of a template names a program that reads text as shell code, anywhere on it
/// (`bash <<< "…"`, `<<< "…" bash`, `cat <(…) | sh`, `source <(…)`). Lexical and deliberately
/// broad: a false match only restricts the values placed in here-strings, here-documents and
/// process substitutions on that line to inert characters.
fn names_a_reader(line: &str) -> bool {
    line.split(|c: char| c.is_whitespace() || "|;&()<>`\"'{}$=".contains(c))
        .any(|w| {
            let base = w.rsplit('/').next().unwrap_or(w);
            SHELL_WORDS.contains(&base)
                || C_RUNNERS.contains(&base)
                || SOURCE_WORDS.contains(&base)
                || REMOTE_WORDS.contains(&base)
                || matches!(base, "eval" | "xargs" | "watch" | "busybox" | "fish")
        })
}

impl ShellState {
    /// The tracker for one template (its text is read ahead once, line by line; see
    /// [`names_a_reader`]).
    pub(super) fn new(template: &str) -> Self {
        let reader_lines = template
            .split('\n')
            .map(|line| {
                // Expressions are values, not program names.
                let mut text = String::new();
                let mut rest = line;
                while let Some(i) = rest.find("${{") {
                    text.push_str(&rest[..i]);
                    text.push(' ');
                    rest = rest[i..].find("}}").map_or("", |j| &rest[i + j + 2..]);
                }
                text.push_str(rest);
                names_a_reader(&text)
            })
            .collect();
        Self {
            stack: vec![Frame::Shell(ShellFrame::new(ShellKind::Top))],
            poison: None,
            pending_backslash: false,
            pending_dollar: false,
            name_run: false,
            heredoc_gen: 0,
            reader_lines,
            line: 0,
        }
    }

    fn line_reads_code(&self) -> bool {
        self.reader_lines.get(self.line).copied().unwrap_or(false)
            || self
                .stack
                .iter()
                .any(|f| matches!(f, Frame::Shell(s) if s.line_reparse))
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

    pub(super) fn feed_literal(&mut self, lit: &str) -> Result<(), String> {
        self.line += lit.matches('\n').count();
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
    pub(super) fn plan(&self) -> Result<Plan, String> {
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
                    if s.proc_subst && self.line_reads_code() {
                        restrict.tighten(Restrict::SafeChars(
                            "a process substitution on a line that feeds a shell is read as code",
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
            if s.redir_target && s.redir_herestring && self.line_reads_code() {
                restrict.tighten(Restrict::SafeChars(
                    "a here-string on a line that feeds a shell is read as code",
                ));
            }
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
    pub(super) fn emit(&mut self, value: &str) -> Result<String, String> {
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
    pub(super) fn emit_env_ref(&mut self, var: &str) -> Result<String, String> {
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
    pub(super) fn mark_emitted(&mut self) {
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
