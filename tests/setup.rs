//! `claw setup check`: a checklist of what is configured; a broken file is marked and fails it.
//! The other parts say how to configure each piece today.

#![allow(clippy::unwrap_used)]

use crate::common::*;

#[test]
fn setup_check_is_a_checklist() {
    let env = Env::new();
    let fresh = env.claw(&["setup", "check"]);
    fresh.expect_code(0);
    assert!(fresh.stdout.contains("[ ] vault"), "{}", fresh.stdout);
    assert!(fresh.stdout.contains("[ ] telegram"), "{}", fresh.stdout);
    assert!(
        fresh.stdout.contains("built-in rules only"),
        "{}",
        fresh.stdout
    );
    env.claw(&["vault", "init"]).expect_code(0);
    let ready = env
        .command(&["setup", "check"])
        .env("TELEGRAM_BOT_TOKEN", "123:abc")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ready.stdout);
    assert!(
        out.contains("[x] vault") && out.contains("[x] telegram"),
        "{out}"
    );
    std::fs::write(env.root.join("policies.yaml"), "rules: 3\n").unwrap();
    let broken = env.claw(&["setup", "check"]);
    broken.expect_code(1);
    assert!(broken.stdout.contains("[!] policies"), "{}", broken.stdout);
    let guide = env.claw(&["setup", "telegram"]);
    guide.expect_code(0);
    assert!(
        guide.stdout.contains("claw msg test telegram"),
        "{}",
        guide.stdout
    );
}

/// Answers every prompt of the wizard (`Question [default]: `, `Value for …: `).
const PROMPT: &str = r"(?:\]|\?|[A-Za-z)]): $";

#[test]
fn setup_on_a_terminal_asks_tests_for_real_and_writes_nothing_until_it_checks_out() {
    let env = Env::new();
    let tg = crate::llm::serve();
    // A token Telegram refuses: nothing is written, not even the vault.
    let mut bad = env.command(&["setup", "telegram"]);
    bad.env("TELEGRAM_API_URL", tg.url())
        .env_remove("TELEGRAM_BOT_TOKEN");
    let ran = on_pty_prompt(&bad, &["bad-token-123456"], Some(PROMPT));
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(ran.stdout.contains("Nothing was written"), "{}", ran.stdout);
    assert!(
        !ran.stdout.contains("bad-token-123456"),
        "the token was echoed"
    );
    assert!(!env.home.join("vault.enc").exists());
    // The whole guided setup: vault (no passphrase), Telegram, the dashboard's first user (a weak
    // password refused first).
    let mut all = env.command(&["setup"]);
    all.env("TELEGRAM_API_URL", tg.url())
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("TELEGRAM_DEFAULT_CHAT_ID");
    let ran = on_pty_prompt(
        &all,
        &[
            "y",
            "y",
            "n",
            "y",
            "123456:good-token-abcdef",
            "100",
            "y",
            "admin",
            "admin",
            "tulip-orbit-canyon-7",
            "tulip-orbit-canyon-7",
        ],
        Some(PROMPT),
    );
    assert_eq!(ran.code, 0, "{}", ran.stdout);
    assert!(
        ran.stdout.contains("[x] token: bot @claw_test_bot"),
        "{}",
        ran.stdout
    );
    assert!(
        !ran.stdout.contains("good-token-abcdef"),
        "the token was echoed"
    );
    assert!(ran.stdout.contains("user admin added"), "{}", ran.stdout);
    assert_eq!(
        tg.sent_to("100"),
        ["claw setup: this chat receives claw's messages."]
    );
    let keys = env.claw(&["vault", "list"]);
    keys.expect_code(0);
    assert!(
        keys.stdout.contains("TELEGRAM_BOT_TOKEN")
            && keys.stdout.contains("TELEGRAM_DEFAULT_CHAT_ID"),
        "{}",
        keys.stdout
    );
    let check = env
        .command(&["setup", "check"])
        .env_remove("TELEGRAM_BOT_TOKEN")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("[x] vault"), "{out}");
    assert!(out.contains("[x] telegram"), "{out}");
    assert!(out.contains("[x] dashboard      1 user(s)"), "{out}");
    // Without a terminal: which commands and variables do the same.
    let plain = env.claw(&["setup"]);
    plain.expect_code(0);
    assert!(
        plain.stdout.contains("needs a terminal"),
        "{}",
        plain.stdout
    );
    assert!(
        plain.stdout.contains("claw dashboard user add"),
        "{}",
        plain.stdout
    );
}
