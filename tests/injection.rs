//! Values substituted into shell commands are quoted for the place they land: unquoted, inside
//! "double" or inside 'single' quotes, a value prints exactly as it is and never runs as code.
//! `| raw` opts out; plain `{{ ... }}` (Go templates) is left alone.

use std::path::PathBuf;

use crate::common::*;

/// The places a value can land in a command, and what the command prints around it.
const FORMS: &[(&str, &str, &str, &str)] = &[
    // (step name, command, printed before the value, printed after it)
    ("bare", "echo ${{ params.x }}", "", "\n"),
    ("double", "echo \"${{ params.x }}\"", "", "\n"),
    ("single", "echo '${{ params.x }}'", "", "\n"),
    ("glued", "printf '%s' pre${{ params.x }}post", "pre", "post"),
];

/// The nested places docs/workflows.md names: command substitution, backticks, here-docs. Each
/// prints the value and a newline.
const NESTED: &[(&str, &str, &str, &str)] = &[
    ("subst", "echo \"$(printf '%s' ${{ params.x }})\"", "", "\n"),
    (
        "subst-double",
        "echo \"$(printf '%s' \"${{ params.x }}\")\"",
        "",
        "\n",
    ),
    (
        "backticks",
        "v=`printf '%s' ${{ params.x }}`\nprintf '%s\\n' \"$v\"",
        "",
        "\n",
    ),
    ("heredoc", "cat <<EOF\n${{ params.x }}\nEOF", "", "\n"),
    (
        "heredoc-quoted",
        "cat <<'EOF'\n${{ params.x }}\nEOF",
        "",
        "\n",
    ),
];

/// A workflow with one step per form, each running in the test's directory.
fn setup(forms: &[(&str, &str, &str, &str)]) -> (Env, PathBuf) {
    let env = Env::new();
    let dir = env.dir.path().to_path_buf();
    let mut yaml = String::from("params:\n  x: {type: string, default: \"\"}\nsteps:\n");
    for (name, command, _, _) in forms {
        yaml.push_str(&format!(
            "  - name: {name}\n    needs: []\n    on_failure: continue\n    cwd: {}\n    command: |-\n",
            dir.display()
        ));
        for line in command.lines() {
            yaml.push_str(&format!("      {line}\n"));
        }
    }
    env.workflow("inject", &yaml);
    (env, dir.join("PWNED"))
}

/// Runs every form with `-p x=<payload>`: each prints exactly the payload and nothing runs.
#[track_caller]
fn check(payload: &str) {
    check_forms(FORMS, payload);
}

#[track_caller]
fn check_forms(forms: &[(&str, &str, &str, &str)], payload: &str) {
    let (env, pwned) = setup(forms);
    let ran = env.claw(&[
        "workflow",
        "run",
        "inject",
        "--json",
        "-p",
        &format!("x={payload}"),
    ]);
    let run = ran.json();
    let mut wrong = Vec::new();
    for (name, command, before, after) in forms {
        let s = step(&run, name);
        let want = format!("{before}{payload}{after}");
        if s["status"] != "succeeded" || s["stdout"] != want.as_str() {
            wrong.push(format!(
                "  {command}\n    want stdout {want:?}\n    got  {} {:?} ({})",
                s["status"], s["stdout"], s["message"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "payload {payload:?} was not printed exactly:\n{}",
        wrong.join("\n")
    );
    assert!(!pwned.exists(), "payload {payload:?} ran a command");
    ran.expect_code(0);
}

#[test]
fn a_command_separator_does_not_inject() {
    check("\"; touch PWNED #");
}

#[test]
fn a_single_quote_separator_does_not_inject() {
    check("'; touch PWNED #");
}

#[test]
fn command_substitution_does_not_run() {
    check("$(touch PWNED)");
}

#[test]
fn backticks_do_not_run() {
    check("`touch PWNED`");
}

#[test]
fn mixed_quotes_print_as_they_are() {
    check("a'b\"c");
}

#[test]
fn a_newline_does_not_start_a_new_command() {
    check("line1\nline2; touch PWNED");
}

#[test]
fn variables_are_not_expanded() {
    check("$HOME");
}

#[test]
fn a_lone_backslash_prints() {
    check("\\");
}

#[test]
fn an_empty_value_prints_nothing() {
    check("");
}

#[test]
fn globs_and_spaces_stay_one_literal_word() {
    check("*  two  spaces ?");
}

#[test]
fn step_outputs_are_quoted_too() {
    let env = Env::new();
    let dir = env.dir.path().display().to_string();
    env.workflow(
        "outputs",
        &format!(
            r#"steps:
  - name: produce
    command: printf 'evil=%s\n' '$(touch PWNED); `touch PWNED`' >> "$CLAW_OUTPUT"
  - name: consume
    cwd: {dir}
    command: echo "${{{{ steps.produce.outputs.evil }}}}" ${{{{ steps.produce.outputs.evil }}}}
"#
        ),
    );
    let ran = env.claw(&["workflow", "run", "outputs", "--json"]);
    let run = ran.json();
    assert_eq!(
        step(&run, "consume")["stdout"],
        "$(touch PWNED); `touch PWNED` $(touch PWNED); `touch PWNED`\n",
        "{run:#}"
    );
    assert!(!env.path("PWNED").exists());
    ran.expect_code(0);
}

#[test]
fn params_reach_the_step_unchanged_as_environment_variables() {
    let env = Env::new();
    env.workflow(
        "envs",
        r#"params:
  x: {type: string, default: ""}
env:
  FROM_WF: ${{ params.x }}
steps:
  - name: s
    env:
      FROM_STEP: ${{ params.x }}
    command: printf '%s|%s|%s' "$CLAW_PARAM_X" "$FROM_WF" "$FROM_STEP"
"#,
    );
    let payload = "$(touch PWNED) 'q' \"d\" `b` \\";
    let ran = env.claw(&[
        "workflow",
        "run",
        "envs",
        "--json",
        "-p",
        &format!("x={payload}"),
    ]);
    ran.expect_code(0);
    assert_eq!(
        step(&ran.json(), "s")["stdout"],
        format!("{payload}|{payload}|{payload}").as_str()
    );
    assert!(!env.path("PWNED").exists());
}

#[test]
fn raw_opts_out_of_quoting() {
    let env = Env::new();
    env.workflow(
        "raw",
        "params:\n  cmd: {type: string, default: \"echo hi\"}\nsteps:\n  - name: s\n    command: ${{ params.cmd | raw }}\n",
    );
    let ran = env.claw(&[
        "workflow",
        "run",
        "raw",
        "--json",
        "-p",
        "cmd=echo hi; echo there",
    ]);
    ran.expect_code(0);
    assert_eq!(step(&ran.json(), "s")["stdout"], "hi\nthere\n");
}

#[test]
fn go_templates_are_left_alone() {
    let env = Env::new();
    env.workflow(
        "gotpl",
        r#"params:
  x: {type: string, default: web}
steps:
  - name: plain
    command: echo '{{.Names}}' "{{ .Status }}"
  - name: mixed
    command: echo '{{.Names}}' ${{ params.x }} {{.ID}}
"#,
    );
    let ran = env.claw(&["workflow", "run", "gotpl", "--json"]);
    ran.expect_code(0);
    let run = ran.json();
    assert_eq!(step(&run, "plain")["stdout"], "{{.Names}} {{ .Status }}\n");
    assert_eq!(step(&run, "mixed")["stdout"], "{{.Names}} web {{.ID}}\n");
}

const PAYLOADS: &[&str] = &[
    "\"; touch PWNED #",
    "'; touch PWNED #",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b\"c",
    "line1\nline2; touch PWNED",
    "$HOME",
    "\\",
    "",
    "*  two  spaces ?",
];

#[test]
fn values_inside_command_substitution_backticks_and_here_docs() {
    for payload in PAYLOADS {
        check_forms(NESTED, payload);
    }
}

#[test]
fn a_value_that_would_end_a_here_doc_fails_the_step() {
    let env = Env::new();
    let dir = env.dir.path().display().to_string();
    env.workflow(
        "heredoc",
        &format!(
            "params:
  x: {{type: string, default: \"\"}}
steps:
  - name: s
    cwd: {dir}
    command: |-
      cat <<EOF
      ${{{{ params.x }}}}
      EOF
"
        ),
    );
    let ran = env.claw(&[
        "workflow",
        "run",
        "heredoc",
        "--json",
        "-p",
        "x=a\nEOF\ntouch PWNED",
    ]);
    ran.expect_code(1);
    assert_eq!(step(&ran.json(), "s")["status"], "failed");
    assert!(!env.path("PWNED").exists());
}

#[test]
fn a_newline_in_a_comment_fails_the_step() {
    let env = Env::new();
    let dir = env.dir.path().display().to_string();
    env.workflow(
        "comment",
        &format!(
            "params:
  x: {{type: string, default: \"\"}}
steps:
  - name: s
    cwd: {dir}
    command: |
      echo ok # ${{{{ params.x }}}}
"
        ),
    );
    let ran = env.claw(&["workflow", "run", "comment", "--json", "-p", "x=harmless"]);
    ran.expect_code(0);
    assert_eq!(step(&ran.json(), "s")["stdout"], "ok\n");

    let ran = env.claw(&[
        "workflow",
        "run",
        "comment",
        "--json",
        "-p",
        "x=a\ntouch PWNED",
    ]);
    ran.expect_code(1);
    assert_eq!(step(&ran.json(), "s")["status"], "failed");
    assert!(!env.path("PWNED").exists());
}

/// Text that a second shell reads, and bash's other arithmetic contexts: each form places the
/// value where a shell (or bash's arithmetic) would read it as code. A hostile value is refused
/// (the step fails before anything runs); a harmless one runs.
const SECOND_READERS: &[(&str, &str, &str)] = &[
    // (step name, command (bash), a harmless value the form accepts)
    (
        "for-arith",
        "for ((i=0; i<${{ params.x }}; i++)); do :; done; echo ok",
        "2",
    ),
    (
        "dot-heredoc",
        ". /dev/stdin <<EOF\necho ${{ params.x }}\nEOF",
        "abc",
    ),
    (
        "source-heredoc",
        "source /dev/stdin <<EOF\necho ${{ params.x }}\nEOF",
        "abc",
    ),
    (
        "bash-herestring",
        "bash <<< \"echo ${{ params.x }}\"",
        "abc",
    ),
    (
        "source-herestring",
        "source /dev/stdin <<< \"echo ${{ params.x }}\"",
        "abc",
    ),
    (
        "herestring-before-bash",
        "<<< \"echo ${{ params.x }}\" bash",
        "abc",
    ),
    (
        "source-procsubst",
        "source <(echo echo ${{ params.x }})",
        "abc",
    ),
    ("bash-procsubst", "bash <(echo echo ${{ params.x }})", "abc"),
    (
        "alias",
        "shopt -s expand_aliases\nalias v=${{ params.x }}\nv",
        "true",
    ),
    (
        "flock-c",
        "flock /tmp/claw-injection-test.lock -c \"echo ${{ params.x }}\"",
        "abc",
    ),
    (
        "script-c",
        "script -qec \"echo ${{ params.x }}\" /dev/null",
        "abc",
    ),
    (
        "declare-n",
        "a=1\ndeclare -n r=${{ params.x }}\necho \"$r\"",
        "a",
    ),
];

fn second_readers_workflow(env: &Env) {
    let dir = env.dir.path().display().to_string();
    let mut yaml = String::from("params:\n  x: {type: string, default: \"\"}\nsteps:\n");
    for (name, command, _) in SECOND_READERS {
        yaml.push_str(&format!(
            "  - name: {name}\n    needs: []\n    on_failure: continue\n    shell: bash\n    cwd: {dir}\n    command: |-\n"
        ));
        for line in command.lines() {
            yaml.push_str(&format!("      {line}\n"));
        }
    }
    env.workflow("readers", &yaml);
}

#[test]
fn text_a_second_shell_reads_and_every_arithmetic_context_refuse_hostile_values() {
    let env = Env::new();
    second_readers_workflow(&env);
    for payload in [
        "$(touch PWNED)",
        "`touch PWNED`",
        "x;touch PWNED",
        "a[$(touch PWNED)]",
        "x\ntouch PWNED",
    ] {
        let ran = env.claw(&[
            "workflow",
            "run",
            "readers",
            "--json",
            "-p",
            &format!("x={payload}"),
        ]);
        let run = ran.json();
        let mut wrong = Vec::new();
        for (name, command, _) in SECOND_READERS {
            let s = step(&run, name);
            let refused = s["status"] == "failed"
                && s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cannot substitute"));
            if !refused {
                wrong.push(format!(
                    "  {command}\n    {} {:?} {:?}",
                    s["status"], s["stdout"], s["message"]
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "payload {payload:?} was not refused:\n{}",
            wrong.join("\n")
        );
        assert!(
            !env.path("PWNED").exists(),
            "payload {payload:?} ran a command"
        );
    }
}

#[test]
fn text_a_second_shell_reads_still_takes_harmless_values() {
    let env = Env::new();
    second_readers_workflow(&env);
    for (name, command, value) in SECOND_READERS {
        let ran = env.claw(&[
            "workflow",
            "run",
            "readers",
            "--json",
            "-p",
            &format!("x={value}"),
        ]);
        let run = ran.json();
        let s = step(&run, name);
        assert_eq!(
            s["status"], "succeeded",
            "{command} with {value:?}: {}",
            s["message"]
        );
    }
}

#[test]
fn an_interpreter_that_is_not_a_posix_shell_takes_no_expressions_in_its_command() {
    let env = Env::new();
    env.workflow(
        "py",
        "params:\n  v: {type: string, default: x}\nsteps:\n  - name: p\n    shell: python3\n    command: print(f\"${{ params.v }}\")\n",
    );
    let out = env.claw(&["workflow", "validate", "py"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("python3") && out.stderr.contains("env:"),
        "{}",
        out.stderr
    );
    // Through the environment it works, and the value stays data.
    env.workflow(
        "py2",
        "params:\n  v: {type: string, default: x}\nsteps:\n  - name: p\n    shell: python3\n    env:\n      V: ${{ params.v }}\n    command: import os; print(os.environ['V'])\n",
    );
    let ran = env.claw(&[
        "workflow",
        "run",
        "py2",
        "--json",
        "-p",
        "v=\"); import os; os.system('touch PWNED'); (\"",
    ]);
    ran.expect_code(0);
    assert!(!env.path("PWNED").exists());
}
