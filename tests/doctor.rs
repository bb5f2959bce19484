//! `claw doctor`: every setting with its source, in the documented order, secrets masked.

use crate::common::*;

#[test]
fn settings_show_their_source_in_order_and_secrets_are_masked() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&[
        "vault",
        "set",
        "TELEGRAM_BOT_TOKEN",
        "123456:vault-token-abc",
    ])
    .expect_code(0);
    env.claw(&["vault", "set", "SMTP_HOST", "from-vault.example"])
        .expect_code(0);
    // .env in the current directory (the harness runs claw in the temp dir).
    env.write(
        ".env",
        "SMTP_HOST=from-dotenv.example\nSMTP_USER=dotenv-user\nSMTP_PASS=dotenv-secret-99\n",
    );
    std::fs::write(
        env.root.join("claw.yaml"),
        "settings:\n  SMTP_USER: yaml-user\n  SMTP_FROM: claw@example.org\n",
    )
    .expect("claw.yaml");
    let ran = env
        .command(&["doctor"])
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9")
        .env("SMTP_HOST", "from-env.example")
        .output()
        .expect("doctor");
    let out = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert!(ran.status.success(), "{out}");
    let row = |name: &str| -> String {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("OPENAI_BASE_URL"),
        "OPENAI_BASE_URL http://127.0.0.1:9 environment"
    );
    assert_eq!(row("SMTP_HOST"), "SMTP_HOST from-env.example environment");
    assert!(
        row("TELEGRAM_BOT_TOKEN").ends_with(" vault"),
        "{}",
        row("TELEGRAM_BOT_TOKEN")
    );
    assert!(
        row("SMTP_USER").contains("dotenv-user"),
        "{}",
        row("SMTP_USER")
    );
    assert!(
        row("SMTP_FROM").contains("claw@example.org") && row("SMTP_FROM").contains("claw.yaml")
    );
    // A setting of a feature not in this version, left at its default, is not listed: only
    // counted.
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("SMTP_PORT ")),
        "{out}"
    );
    assert!(
        out.contains("more settings, for features not in this version"),
        "{out}"
    );
    assert_eq!(row("CLAW_SKILL_HUB"), "CLAW_SKILL_HUB - not set");
    assert!(
        row("SMTP_PASS").contains("do************99"),
        "{}",
        row("SMTP_PASS")
    );
    assert!(
        !out.contains("vault-token-abc") && !out.contains("dotenv-secret-99"),
        "{out}"
    );
}

#[test]
fn a_broken_audit_log_is_a_problem() {
    let env = Env::new();
    env.workflow("q", "steps:\n  - name: a\n    command: 'true'\n");
    env.claw(&["workflow", "run", "q"]).expect_code(0);
    let log = env.home.join("audit.log");
    let text = read(&log).replace("succeeded", "failed");
    std::fs::write(&log, text).expect("write");
    let ran = env.claw(&["doctor"]);
    ran.expect_code(1);
    assert!(
        ran.stdout.contains("PROBLEM  audit log: broken at line 3"),
        "{}",
        ran.stdout
    );
}
