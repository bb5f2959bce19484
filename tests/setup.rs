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
