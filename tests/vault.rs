//! `claw vault` through the binary: the seed's commands and masking, interop with the Debian
//! `age` CLI both ways, concurrent writers, and audit entries that name keys but never values.

use std::process::Command;

use crate::common::*;

fn age_available() {
    let ok = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the `age` CLI is needed: apt-get update && apt-get install -y age"
    );
}

#[test]
fn init_set_get_list_delete_like_the_seed() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    let again = env.claw(&["vault", "init"]);
    again.expect_code(0);
    assert!(
        again.stdout.contains("already initialized"),
        "{}",
        again.stdout
    );
    for f in ["age-identity.txt", "vault.enc"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(env.home.join(f))
            .expect(f)
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    env.claw(&["vault", "set", "API_TOKEN", "sk-ab123"])
        .expect_code(0);
    let mut set = env.command(&["vault", "set", "DB_PASS"]);
    set.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = set.spawn().expect("spawn");
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"p4ss word\n")
            .expect("write");
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(
        env.claw(&["vault", "get", "API_TOKEN"]).stdout,
        "API_TOKEN = sk****23\n"
    );
    assert_eq!(
        env.claw(&["vault", "get", "DB_PASS", "--reveal"]).stdout,
        "p4ss word\n"
    );
    assert_eq!(env.claw(&["vault", "list"]).stdout, "API_TOKEN\nDB_PASS\n");
    let missing = env.claw(&["vault", "get", "NOPE"]);
    missing.expect_code(1);
    assert!(
        missing
            .stderr
            .contains("no secret named `NOPE` in the vault (see `claw vault list`)"),
        "{}",
        missing.stderr
    );
    let deleted = env.claw(&["vault", "delete", "NOPE"]);
    deleted.expect_code(1);
    assert_eq!(
        deleted.stderr, missing.stderr,
        "one wording for one situation"
    );
    env.claw(&["vault", "delete", "API_TOKEN"]).expect_code(0);
    assert_eq!(
        env.claw(&["vault", "list", "--json"]).json(),
        serde_json::json!(["DB_PASS"])
    );
    let bad = env.claw(&["vault", "set", "bad key", "x"]);
    bad.expect_code(2);
    // No temp files left behind.
    let leftovers: Vec<String> = std::fs::read_dir(&env.home)
        .expect("home")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_age_cli_reads_claws_vault_and_claw_reads_the_age_clis() {
    age_available();
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "K1", "value-one"])
        .expect_code(0);
    let out = Command::new("age")
        .args(["-d", "-i"])
        .arg(env.home.join("age-identity.txt"))
        .arg(env.home.join("vault.enc"))
        .output()
        .expect("age -d");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plain, serde_json::json!({"K1": "value-one"}));

    // A seed-style data dir: identity from age-keygen, vault from `age -r`.
    let seed = Env::new();
    std::fs::create_dir_all(&seed.home).expect("mkdir");
    let identity = seed.home.join("age-identity.txt");
    assert!(
        Command::new("age-keygen")
            .arg("-o")
            .arg(&identity)
            .status()
            .expect("age-keygen")
            .success()
    );
    let public = String::from_utf8(
        Command::new("age-keygen")
            .arg("-y")
            .arg(&identity)
            .output()
            .expect("-y")
            .stdout,
    )
    .expect("utf-8");
    let plain = seed.write("plain.json", "{\"SEED_KEY\": \"from the seed\"}");
    let status = Command::new("age")
        .args(["-r", public.trim(), "-o"])
        .arg(seed.home.join("vault.enc"))
        .arg(&plain)
        .status()
        .expect("age -r");
    assert!(status.success());
    assert_eq!(
        seed.claw(&["vault", "get", "SEED_KEY", "--reveal"]).stdout,
        "from the seed\n"
    );
}

#[test]
fn eight_concurrent_setters_lose_no_key() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    let children: Vec<_> = (0..8)
        .map(|i| env.spawn(&["vault", "set", &format!("KEY_{i}"), &format!("value-{i}")]))
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let keys = env.claw(&["vault", "list", "--json"]).json();
    assert_eq!(keys.as_array().map(Vec::len), Some(8), "{keys}");
    for i in 0..8 {
        assert_eq!(
            env.claw(&["vault", "get", &format!("KEY_{i}"), "--reveal"])
                .stdout,
            format!("value-{i}\n")
        );
    }
}

#[test]
fn the_audit_log_names_keys_and_never_values() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    env.claw(&["vault", "set", "CANARY", "zz-canary-value-91"])
        .expect_code(0);
    env.claw(&["vault", "get", "CANARY", "--reveal"])
        .expect_code(0);
    env.claw(&["vault", "rotate-key"]).expect_code(0);
    env.claw(&["vault", "delete", "CANARY"]).expect_code(0);
    let log = read(&env.home.join("audit.log"));
    for action in [
        "vault.init",
        "vault.set",
        "vault.get.reveal",
        "vault.rotate_key",
        "vault.delete",
    ] {
        assert!(log.contains(action), "{action} missing:\n{log}");
    }
    assert!(log.contains("CANARY"));
    assert!(!log.contains("zz-canary-value-91"), "{log}");
    env.claw(&["audit", "verify"]).expect_code(0);
}

#[test]
fn rotation_policies_flag_old_and_unknown_secrets() {
    let env = Env::new();
    env.claw(&["vault", "init"]).expect_code(0);
    // A seed-format policy file: one key rotated long ago, one never.
    std::fs::write(
        env.home.join("rotation_policies.yaml"),
        "OLD_TOKEN:\n  max_age_days: 30\n  last_rotated: '2020-01-01T00:00:00'\nFRESH:\n  max_age_days: 30\n",
    )
    .expect("write");
    let check = env.claw(&["vault", "rotation", "check", "--json"]);
    check.expect_code(1);
    let j = check.json();
    assert_eq!(j[0]["key"], "FRESH");
    assert_eq!(j[0]["state"], "expired", "unknown date counts as expired");
    assert_eq!(j[1]["key"], "OLD_TOKEN");
    assert_eq!(j[1]["state"], "expired");
    env.claw(&["vault", "set", "FRESH", "new-value-1"])
        .expect_code(0);
    env.claw(&["vault", "set", "OLD_TOKEN", "new-value-2"])
        .expect_code(0);
    let check = env.claw(&["vault", "rotation", "check", "--json"]);
    check.expect_code(0);
    assert!(
        check
            .json()
            .as_array()
            .expect("array")
            .iter()
            .all(|p| p["state"] == "ok")
    );
    env.claw(&["vault", "rotation", "policy", "set", "NEW_KEY", "7"])
        .expect_code(0);
    let list = env.claw(&["vault", "rotation", "policy", "list"]);
    assert!(
        list.stdout.contains("NEW_KEY") && list.stdout.contains("unknown"),
        "{}",
        list.stdout
    );
}
