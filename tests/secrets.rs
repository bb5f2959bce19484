//! Secrets in workflows: `${{ secrets.NAME }}` comes from the vault, reaches the command through
//! its environment (never its command line), and its value is masked everywhere claw writes.

use crate::common::*;

const CANARY: &str = "zz-Canary-9f8e7d";

fn env_with_canary() -> Env {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "CANARY", CANARY]).expect_code(0);
    env
}

/// Every file under a directory whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_canary_secret_appears_nowhere() {
    let env = env_with_canary();
    env.workflow(
        "leak",
        r#"steps:
  - name: raw
    command: echo "token is ${{ secrets.CANARY }}"
  - name: encodings
    env: {TOKEN: "${{ secrets.CANARY }}"}
    command: |
      printf '%s' "$TOKEN" | base64
      printf '%s' "$TOKEN" | xxd -p
      printf '{"t":"%s"}\n' "$TOKEN"
      printf '%s' "$TOKEN" | head -c 7; sleep 0.2; printf '%s\n' "$TOKEN" | tail -c +8
      echo "leak=$TOKEN" >> "$CLAW_OUTPUT"
  - name: argv
    command: ps -o args= -p $$ ; echo '${{ secrets.CANARY }}' >&2; exit 3
"#,
    );
    let ran = env.claw(&["workflow", "run", "leak", "--json"]);
    ran.expect_code(1);
    assert!(
        !ran.stdout.contains(CANARY) && !ran.stderr.contains(CANARY),
        "{}{}",
        ran.stdout,
        ran.stderr
    );
    let run = ran.json();
    assert_eq!(step(&run, "raw")["stdout"], "token is ***\n");
    assert_eq!(step(&run, "encodings")["outputs"]["leak"], "***");
    // The command line the shell saw holds a reference, not the value.
    let argv = step(&run, "argv")["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(argv.contains("${CLAW_SECRET_CANARY}"), "{argv}");
    assert_eq!(step(&run, "argv")["stderr"], "***\n");
    let leaks = files_containing(&env.home, CANARY);
    // The vault itself is encrypted: nothing in the data directory holds the value in clear.
    assert!(leaks.is_empty(), "canary found in {leaks:?}");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    for form in [b64.trim_end_matches('='), &hex::encode(CANARY)] {
        assert!(
            ran.stdout.contains("***") && !ran.stdout.contains(form),
            "{form} in output"
        );
        assert!(files_containing(&env.home, form).is_empty(), "{form}");
    }
    // What the step printed in those encodings was masked in its log, not just absent.
    let log = read(std::path::Path::new(
        step(&run, "encodings")["log"].as_str().expect("log path"),
    ));
    assert_eq!(log.matches("***").count(), 4, "{log}");
}

#[test]
fn a_missing_secret_fails_the_step_and_validate_env_says_so() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.workflow(
        "needs",
        "steps:\n  - name: s\n    command: echo ${{ secrets.NOPE }}\n",
    );
    env.claw(&["workflow", "validate", "needs"]).expect_code(0);
    let v = env.claw(&["workflow", "validate", "needs", "--env"]);
    v.expect_code(2);
    assert!(
        v.stderr.contains("secret `NOPE` is not in the vault"),
        "{}",
        v.stderr
    );
    let ran = env.claw(&["workflow", "run", "needs", "--json"]);
    ran.expect_code(1);
    let msg = step(&ran.json(), "s")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("secret `NOPE` is not in the vault"), "{msg}");
}

#[test]
fn a_secret_used_inside_a_larger_expression_is_refused_in_commands() {
    let env = env_with_canary();
    env.workflow(
        "mix",
        "steps:\n  - name: s\n    command: echo ${{ secrets.CANARY | lower }}\n",
    );
    let ran = env.claw(&["workflow", "run", "mix", "--json"]);
    ran.expect_code(1);
    let msg = step(&ran.json(), "s")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("a secret can only be used alone"), "{msg}");
    assert!(!ran.stdout.contains("zz-canary"), "{}", ran.stdout);
}

#[test]
fn secrets_work_in_every_quoting_context() {
    let env = env_with_canary();
    env.workflow(
        "ctx",
        r#"steps:
  - name: s
    command: |
      a=${{ secrets.CANARY }}
      b="pre-${{ secrets.CANARY }}"
      c='x${{ secrets.CANARY }}y'
      test "$a" = "$CLAW_SECRET_CANARY" && test "$b" = "pre-$CLAW_SECRET_CANARY" && test "$c" = "x${CLAW_SECRET_CANARY}y" && echo same
"#,
    );
    let ran = env.claw(&["workflow", "run", "ctx", "--json"]);
    ran.expect_code(0);
    assert_eq!(step(&ran.json(), "s")["stdout"], "same\n");
}

/// Every common way a program re-encodes a secret before printing it: each step prints the value
/// through one encoder, and nothing of the encoded text beyond the few characters it shares with
/// its neighbours may reach the step's output. The reference encoding is made by the same tool
/// outside claw.
#[test]
fn encoded_secrets_are_masked_in_every_common_form() {
    const LONG: &str = "Sécrét tøken/0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ+klmn";
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "LONG", LONG]).expect_code(0);
    let variants: &[(&str, &str)] = &[
        ("b64", r#"printf '%s' "$T" | base64"#),
        ("b64-newline", r#"printf '%s\n' "$T" | base64"#),
        ("b64-openssl", r#"printf '%s' "$T" | openssl base64"#),
        ("b64-offset1", r#"printf 'KEY=%s' "$T" | base64 -w0"#),
        ("b64-offset2", r#"printf 'K=%s' "$T" | base64 -w0"#),
        ("b64-url", r#"printf '%s' "$T" | basenc --base64url -w0"#),
        ("xxd", r#"printf '%s' "$T" | xxd -p"#),
        ("hex-upper", r#"printf '%s' "$T" | basenc --base16 -w0"#),
        (
            "json-ascii",
            r#"python3 -c 'import json,os; print(json.dumps(os.environ["T"]))'"#,
        ),
        (
            "json-slash",
            r#"python3 -c 'import json,os; print(json.dumps(os.environ["T"], ensure_ascii=False).replace("/", "\\/"))'"#,
        ),
        (
            "quote",
            r#"python3 -c 'import os,urllib.parse as u; print(u.quote(os.environ["T"]))'"#,
        ),
        (
            "quote-plus",
            r#"python3 -c 'import os,urllib.parse as u; print(u.quote_plus(os.environ["T"]))'"#,
        ),
        (
            "quote-lower",
            r#"python3 -c 'import os,re,urllib.parse as u; print(re.sub("%..", lambda m: m.group(0).lower(), u.quote(os.environ["T"], safe="")))'"#,
        ),
    ];
    let mut yaml = String::from("env: {T: \"${{ secrets.LONG }}\"}\nsteps:\n");
    for (name, command) in variants {
        yaml.push_str(&format!(
            "  - name: {name}\n    command: {}\n",
            yaml_quote(command)
        ));
    }
    env.workflow("encodings", &yaml);
    let ran = env.claw(&["workflow", "run", "encodings", "--json"]);
    ran.expect_code(0);
    let run = ran.json();
    for (name, command) in variants {
        let reference = std::process::Command::new("bash")
            .args(["-c", command])
            .env("T", LONG)
            .output()
            .expect("run the encoder");
        let reference: String = String::from_utf8_lossy(&reference.stdout)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(reference.len() > 40, "{name}: {reference}");
        let printed: String = step(&run, name)["stdout"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(printed.contains("***"), "{name}: {printed}");
        // Up to 8 characters at either end may depend on the bytes around the value.
        let inner = &reference[8..reference.len() - 8];
        let leaked: Vec<&str> = (0..inner.len().saturating_sub(12))
            .filter_map(|i| inner.get(i..i + 12))
            .filter(|w| printed.contains(w))
            .collect();
        assert!(leaked.is_empty(), "{name}: {printed} leaks {leaked:?}");
    }
}

/// A YAML double-quoted scalar holding `text`.
fn yaml_quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// `$CLAW_OUTPUT` holds what a step wrote before masking: it is private while the step runs and
/// gone afterwards, whether the step succeeded, failed or timed out.
#[test]
fn the_outputs_file_is_private_and_never_left_behind() {
    let env = env_with_canary();
    env.workflow(
        "outs",
        r#"steps:
  - name: mode
    command: stat -c %a "$CLAW_OUTPUT"
  - name: fails
    env: {TOKEN: "${{ secrets.CANARY }}"}
    command: echo "t=$TOKEN" >> "$CLAW_OUTPUT"; exit 1
  - name: slow
    needs: []
    timeout: 1s
    env: {TOKEN: "${{ secrets.CANARY }}"}
    command: echo "t=$TOKEN" >> "$CLAW_OUTPUT"; sleep 30
"#,
    );
    let ran = env.claw(&["workflow", "run", "outs", "--json"]);
    ran.expect_code(1);
    let run = ran.json();
    assert_eq!(step(&run, "mode")["stdout"], "600\n");
    let left: Vec<String> = files_containing(&env.home, CANARY)
        .into_iter()
        .chain(walk(&env.home).into_iter().filter(|p| p.ends_with(".out")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
