//! Tests of the evaluator and of shell rendering (run against real shells).
#![allow(
    clippy::disallowed_methods,
    reason = "tests start real programs and read their own variables"
)]

use super::shell::{is_integer, is_safe_char};
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
        Expect::Exact(|v| (!has_line(v, "A") && !has_line(v, "B")).then(|| format!("{v}\n{v}\n"))),
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
