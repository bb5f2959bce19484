//! `claw template`: the starter workflows compared with the user's copies: current, modified,
//! outdated (an older template, unedited: upgraded without asking), diff, reset.

#![allow(clippy::unwrap_used)]

use sha2::Digest;

use crate::common::*;

fn states(env: &Env) -> Vec<(String, String)> {
    let l = env.claw(&["template", "list", "--json"]);
    l.expect_code(0);
    l.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn state(env: &Env, name: &str) -> String {
    states(env).into_iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn templates_list_diff_upgrade_reset() {
    let env = Env::new();
    assert!(states(&env).iter().all(|(_, s)| s == "missing"));
    env.claw(&["workflow", "init"]).expect_code(0);
    assert!(
        states(&env).iter().all(|(_, s)| s == "current"),
        "{:?}",
        states(&env)
    );
    let hello = env.root.join("workflows/hello.yaml");
    let current = read(&hello);

    // Edited by the user: modified; diff shows it; upgrade leaves it without --force.
    std::fs::write(&hello, format!("{current}# my note\n")).unwrap();
    assert_eq!(state(&env, "hello"), "modified");
    let d = env.claw(&["template", "diff", "hello"]);
    d.expect_code(1);
    assert!(d.stdout.contains("-# my note"), "{}", d.stdout);
    let up = env.claw(&["template", "upgrade", "hello"]);
    up.expect_code(1);
    assert!(read(&hello).contains("# my note"));

    // An older template, unedited: outdated, and upgrade takes the current one.
    let old = "name: hello\nsteps:\n  - name: hi\n    command: echo old\n";
    std::fs::write(&hello, old).unwrap();
    let sum = hex::encode(sha2::Sha256::digest(old.as_bytes()));
    let mut rec: serde_json::Value =
        serde_json::from_str(&read(&env.home.join("templates.json"))).unwrap();
    rec["hello"] = sum.into();
    std::fs::write(env.home.join("templates.json"), rec.to_string()).unwrap();
    assert_eq!(state(&env, "hello"), "outdated");
    env.claw(&["template", "upgrade"]).expect_code(0);
    assert_eq!(read(&hello), current);

    // Reset puts the template back and keeps the edited copy.
    std::fs::write(&hello, "mine\n").unwrap();
    env.claw(&["template", "reset", "hello"]).expect_code(0);
    assert_eq!(read(&hello), current);
    assert_eq!(read(&env.root.join("workflows/hello.yaml.bak")), "mine\n");
    let bad = env.claw(&["template", "diff", "nope"]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("no template named `nope`"),
        "{}",
        bad.stderr
    );
}
