//! Tests of the vault: API behaviour, compatibility with the `age` CLI, concurrency (threads
//! and processes) and crash safety (SIGKILL at random moments).
#![allow(
    clippy::disallowed_methods,
    reason = "tests start real programs and read their own variables"
)]

use std::collections::BTreeMap;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

// ---------- helpers ----------

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn temps_in(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with(".vault-") && n.ends_with(".tmp"))
        .collect()
}

fn new_vault() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault.init().unwrap();
    (dir, vault)
}

fn random_u64() -> u64 {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// The path of a tool from Debian's `age` package; fails the test if it is not installed.
fn age_tool(name: &str) -> &str {
    match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => name,
        _ => panic!(
            "`{name}` is not installed: these compatibility tests need the age CLI \
             (`apt-get update && apt-get install -y age`)"
        ),
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn exposed(map: &BTreeMap<String, Secret>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

/// Encrypts `json` with the age CLI to `recipient` as the vault of `dir`.
fn age_encrypt(dir: &Path, recipient: &str, json: &str, armor: bool) {
    let plain = dir.join("plain.json");
    fs::write(&plain, json).unwrap();
    let mut cmd = Command::new(age_tool("age"));
    cmd.arg("-e").arg("-r").arg(recipient);
    if armor {
        cmd.arg("-a");
    }
    run(cmd.arg("-o").arg(dir.join(VAULT_FILE)).arg(&plain));
    fs::remove_file(plain).unwrap();
}

// ---------- Secret, mask, key names ----------

#[test]
fn mask_matches_the_seed() {
    // The seed: the first 2 and last 2 characters, one `*` for each one between.
    assert_eq!(mask("sk-ab123"), "sk****23");
    assert_eq!(mask("sk-live-0123"), "sk********23");
    assert_eq!(mask("hunter2"), "hu***r2");
    assert_eq!(mask("abcde"), "ab*de");
    assert_eq!(mask("abcd"), "****");
    assert_eq!(mask("ab"), "****");
    assert_eq!(mask(""), "****");
    assert_eq!(mask("pässwörd"), "pä****rd");
}

#[test]
fn secret_never_prints_its_value() {
    let s = Secret::new("topsecretvalue".to_owned());
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(s.expose(), "topsecretvalue");
    let mut map = BTreeMap::new();
    map.insert("api:token".to_owned(), s.clone());
    map.insert("other".to_owned(), Secret::from("anothervalue"));
    for shown in [
        format!("{map:?}"),
        format!("{map:#?}"),
        format!("{:?}", Some(&s)),
    ] {
        assert!(!shown.contains("topsecretvalue"), "{shown}");
        assert!(!shown.contains("anothervalue"), "{shown}");
        assert!(shown.contains("***"));
    }
    assert!(format!("{map:?}").contains("api:token"));
}

#[test]
fn key_names_are_validated() {
    for ok in [
        "a",
        "API_KEY",
        "ssh:host:password",
        "db.main-2",
        "x:y.z_w-1",
    ] {
        validate_key(ok).unwrap();
    }
    for bad in ["", " ", "a b", "a/b", "key=1", "ключ", "a\n", "$X", "a*"] {
        let err = validate_key(bad).unwrap_err();
        assert!(matches!(err, VaultError::InvalidKey { .. }), "{bad:?}");
        assert!(err.to_string().contains("invalid secret name"), "{err}");
    }
    let (_dir, vault) = new_vault();
    let err = vault.set("bad key", &Secret::from("v")).unwrap_err();
    assert!(matches!(err, VaultError::InvalidKey { .. }));
    assert!(matches!(
        vault.get("").unwrap_err(),
        VaultError::InvalidKey { .. }
    ));
    assert!(matches!(
        vault.delete("a/b").unwrap_err(),
        VaultError::InvalidKey { .. }
    ));
}

// ---------- init, get/set/delete/list ----------

#[test]
fn init_writes_a_keygen_style_identity_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let vault = Vault::new(&data);
    let InitOutcome::Created { public_key } = vault.init().unwrap() else {
        panic!("expected Created");
    };
    assert!(public_key.starts_with("age1"));
    let id_path = data.join(IDENTITY_FILE);
    assert_eq!(mode(&id_path), 0o600);
    assert_eq!(mode(&data.join(VAULT_FILE)), 0o600);
    let text = fs::read_to_string(&id_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("# created: 20"));
    assert_eq!(lines[1], format!("# public key: {public_key}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));

    vault.set("k", &Secret::from("v")).unwrap();
    assert_eq!(
        vault.init().unwrap(),
        InitOutcome::AlreadyThere {
            public_key: public_key.clone()
        }
    );
    assert_eq!(fs::read_to_string(&id_path).unwrap(), text);
    assert_eq!(vault.public_key().unwrap(), public_key);
    assert_eq!(vault.get("k").unwrap().unwrap().expose(), "v");
    assert!(temps_in(&data).is_empty());
}

#[test]
fn crud_and_sorted_value_free_list() {
    let (dir, vault) = new_vault();
    assert!(vault.list().unwrap().is_empty());
    vault.set("zeta", &Secret::from("value-z")).unwrap();
    vault.set("alpha", &Secret::from("value-a")).unwrap();
    vault
        .set("ssh:host:password", &Secret::from("value-s"))
        .unwrap();
    vault.set("alpha", &Secret::from("value-a2")).unwrap();
    let list = vault.list().unwrap();
    assert_eq!(list, ["alpha", "ssh:host:password", "zeta"]);
    assert!(list.iter().all(|n| !n.contains("value")));
    assert_eq!(vault.get("alpha").unwrap().unwrap().expose(), "value-a2");
    assert!(vault.get("missing").unwrap().is_none());

    vault.delete("zeta").unwrap();
    assert_eq!(vault.list().unwrap(), ["alpha", "ssh:host:password"]);
    let err = vault.delete("zeta").unwrap_err();
    assert!(
        matches!(&err, VaultError::NoSuchKey(k) if k == "zeta"),
        "{err:?}"
    );
    assert!(err.to_string().contains("zeta"));

    let all = vault.all().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["ssh:host:password"].expose(), "value-s");
    assert_eq!(mode(&vault.vault_path()), 0o600);
    assert_eq!(
        names_in(dir.path()),
        [IDENTITY_FILE, VAULT_FILE, LOCK_FILE]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
}

#[test]
fn missing_vault_file_is_an_empty_vault() {
    let (_dir, vault) = new_vault();
    fs::remove_file(vault.vault_path()).unwrap();
    assert!(vault.list().unwrap().is_empty());
    assert!(vault.get("x").unwrap().is_none());
    assert!(vault.all().unwrap().is_empty());
    assert!(matches!(
        vault.delete("x").unwrap_err(),
        VaultError::NoSuchKey(_)
    ));
    vault.set("x", &Secret::from("1")).unwrap();
    assert_eq!(vault.list().unwrap(), ["x"]);
}

#[test]
fn uninitialised_and_missing_identity_errors() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(&dir.path().join("nope"));
    assert!(vault.list().unwrap().is_empty());
    let err = vault.set("k", &Secret::from("v")).unwrap_err();
    assert!(matches!(err, VaultError::NotInitialized { .. }), "{err:?}");
    assert!(err.to_string().contains("init"));
    assert!(matches!(
        vault.public_key().unwrap_err(),
        VaultError::NotInitialized { .. }
    ));
    let vault = Vault::new(dir.path());
    assert!(matches!(
        vault.set("k", &Secret::from("v")).unwrap_err(),
        VaultError::NotInitialized { .. }
    ));

    let (_d2, vault) = new_vault();
    vault.set("k", &Secret::from("v")).unwrap();
    fs::remove_file(vault.identity_path()).unwrap();
    let err = vault.get("k").unwrap_err();
    assert!(matches!(err, VaultError::NoIdentity { .. }), "{err:?}");
    assert!(err.to_string().contains(IDENTITY_FILE));
    assert!(matches!(
        vault.set("k", &Secret::from("w")).unwrap_err(),
        VaultError::NoIdentity { .. }
    ));
    // init must not make a new identity that could never read the existing vault.
    let err = vault.init().unwrap_err();
    assert!(
        matches!(err, VaultError::AlreadyInitialized { .. }),
        "{err:?}"
    );
    assert!(!vault.identity_path().exists());
}

#[test]
fn bad_identity_wrong_identity_and_corrupt_vault() {
    let (_dir, vault) = new_vault();
    vault.set("k", &Secret::from("v")).unwrap();
    let good = fs::read_to_string(vault.identity_path()).unwrap();

    fs::write(vault.identity_path(), "# nothing here\n").unwrap();
    let err = vault.get("k").unwrap_err();
    assert!(matches!(err, VaultError::BadIdentity { .. }), "{err:?}");
    fs::write(vault.identity_path(), "AGE-SECRET-KEY-1NOTAKEY\n").unwrap();
    assert!(matches!(
        vault.public_key().unwrap_err(),
        VaultError::BadIdentity { .. }
    ));

    // Another valid identity: the vault is not encrypted to it.
    let other = tempfile::tempdir().unwrap();
    Vault::new(other.path()).init().unwrap();
    fs::copy(other.path().join(IDENTITY_FILE), vault.identity_path()).unwrap();
    let err = vault.get("k").unwrap_err();
    assert!(matches!(err, VaultError::Decrypt { .. }), "{err:?}");
    assert!(err.to_string().contains(".bak"), "{err}");
    // A failed write changes nothing.
    assert!(vault.set("k", &Secret::from("w")).is_err());
    fs::write(vault.identity_path(), &good).unwrap();
    assert_eq!(vault.get("k").unwrap().unwrap().expose(), "v");

    // Not an age file at all.
    fs::write(vault.vault_path(), b"{\"k\": \"plaintext\"}").unwrap();
    assert!(matches!(
        vault.list().unwrap_err(),
        VaultError::Decrypt { .. }
    ));
}

#[test]
fn corrupt_vault_errors_do_not_leak_content() {
    let (dir, vault) = new_vault();
    let pk = vault.public_key().unwrap();
    for json in [
        r#"{"k": 12345, "p": "leakedvalue"}"#,
        r#""leakedvalue""#,
        r#"["leakedvalue"]"#,
        "leakedvalue",
    ] {
        age_encrypt(dir.path(), &pk, json, false);
        let err = vault.list().unwrap_err();
        assert!(matches!(err, VaultError::Corrupt { .. }), "{json}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("leakedvalue"), "{shown}");
        assert!(!shown.contains("12345"), "{shown}");
    }
}

// ---------- compatibility with the age CLI ----------

#[test]
fn vault_written_here_decrypts_with_age_cli() {
    let (dir, vault) = new_vault();
    vault
        .set("ssh:host:password", &Secret::from("p@ss \"wörd\"\n"))
        .unwrap();
    vault.set("API_KEY", &Secret::from("sk-123")).unwrap();
    let out = run(Command::new(age_tool("age"))
        .arg("-d")
        .arg("-i")
        .arg(dir.path().join(IDENTITY_FILE))
        .arg(dir.path().join(VAULT_FILE)));
    let got: BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
    assert_eq!(got, exposed(&vault.all().unwrap()));
    assert_eq!(got["ssh:host:password"], "p@ss \"wörd\"\n");
    // Binary age output, as the seed's `age -e` wrote it.
    assert!(
        fs::read(vault.vault_path())
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
}

#[test]
fn vault_written_by_age_cli_is_read_binary_and_armored() {
    let (dir, vault) = new_vault();
    let pk = vault.public_key().unwrap();
    let json = r#"{"ssh:host:password": "hunter2", "TOKEN": "abc\u00e9", "empty": ""}"#;
    for armor in [false, true] {
        age_encrypt(dir.path(), &pk, json, armor);
        let head = fs::read(vault.vault_path()).unwrap();
        assert_eq!(
            head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
            armor
        );
        assert_eq!(
            vault.list().unwrap(),
            ["TOKEN", "empty", "ssh:host:password"]
        );
        assert_eq!(vault.get("TOKEN").unwrap().unwrap().expose(), "abcé");
        assert_eq!(vault.get("empty").unwrap().unwrap().expose(), "");
    }
    // A write after reading armored input stays readable by the CLI.
    vault.set("new", &Secret::from("n")).unwrap();
    let out = run(Command::new(age_tool("age"))
        .arg("-d")
        .arg("-i")
        .arg(vault.identity_path())
        .arg(vault.vault_path()));
    let got: BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got["ssh:host:password"], "hunter2");
}

#[test]
fn identity_from_age_keygen_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let id_path = dir.path().join(IDENTITY_FILE);
    run(Command::new(age_tool("age-keygen")).arg("-o").arg(&id_path));
    let before = fs::read(&id_path).unwrap();
    let pk_cli = String::from_utf8(run(Command::new(age_tool("age-keygen"))
        .arg("-y")
        .arg(&id_path)))
    .unwrap();
    let vault = Vault::new(dir.path());
    assert_eq!(vault.public_key().unwrap(), pk_cli.trim());
    assert_eq!(
        vault.init().unwrap(),
        InitOutcome::AlreadyThere {
            public_key: pk_cli.trim().to_owned()
        }
    );
    assert_eq!(fs::read(&id_path).unwrap(), before);
    vault.set("k", &Secret::from("v")).unwrap();
    let out = run(Command::new(age_tool("age"))
        .arg("-d")
        .arg("-i")
        .arg(&id_path)
        .arg(vault.vault_path()));
    assert_eq!(out, br#"{"k":"v"}"#);
}

#[test]
fn identity_written_here_works_with_age_cli() {
    let (_dir, vault) = new_vault();
    let pk_cli = run(Command::new(age_tool("age-keygen"))
        .arg("-y")
        .arg(vault.identity_path()));
    assert_eq!(
        String::from_utf8(pk_cli).unwrap().trim(),
        vault.public_key().unwrap()
    );
}

// ---------- rotation ----------

#[test]
fn rotate_key_reencrypts_and_keeps_a_backup() {
    let (dir, vault) = new_vault();
    vault.set("a", &Secret::from("1")).unwrap();
    vault.set("b:c", &Secret::from("2")).unwrap();
    let old_pk = vault.public_key().unwrap();
    let old_id = fs::read(vault.identity_path()).unwrap();

    let backup = vault.rotate_key().unwrap();
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name
        .strip_prefix("age-identity.txt.")
        .and_then(|s| s.strip_suffix(".bak"))
        .unwrap();
    assert_eq!(stamp.len(), 16, "{name}");
    assert!(
        stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
        "{name}"
    );
    assert!(
        stamp[..8]
            .bytes()
            .chain(stamp[9..15].bytes())
            .all(|b| b.is_ascii_digit())
    );
    assert_eq!(fs::read(&backup).unwrap(), old_id);
    assert_eq!(mode(&backup), 0o600);
    assert_eq!(mode(&vault.identity_path()), 0o600);

    let new_pk = vault.public_key().unwrap();
    assert_ne!(new_pk, old_pk);
    assert_eq!(exposed(&vault.all().unwrap()).len(), 2);
    assert_eq!(vault.get("b:c").unwrap().unwrap().expose(), "2");

    // The vault is now for the new key only.
    let out = Command::new(age_tool("age"))
        .arg("-d")
        .arg("-i")
        .arg(&backup)
        .arg(vault.vault_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = run(Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(vault.identity_path())
        .arg(vault.vault_path()));
    assert_eq!(out, br#"{"a":"1","b:c":"2"}"#);

    // A second rotation in the same second gets its own backup.
    let second = vault.rotate_key().unwrap();
    assert_ne!(second, backup);
    assert!(backup.exists() && second.exists());
    assert_eq!(vault.get("a").unwrap().unwrap().expose(), "1");
    assert!(temps_in(dir.path()).is_empty());
}

// ---------- locking, concurrency, crashes ----------

#[test]
fn a_held_lock_times_out_with_locked() {
    let (_dir, vault) = new_vault();
    let vault = vault.with_lock_timeout(Duration::from_millis(100));
    let held = file::lock(&vault.dir().join(LOCK_FILE), Duration::ZERO).unwrap();
    let err = vault.set("k", &Secret::from("v")).unwrap_err();
    assert!(matches!(err, VaultError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains(LOCK_FILE));
    drop(held);
    vault.set("k", &Secret::from("v")).unwrap();
}

#[test]
fn eight_threads_setting_their_own_keys_lose_nothing() {
    let (dir, vault) = new_vault();
    std::thread::scope(|s| {
        for t in 0..8 {
            let vault = vault.clone();
            s.spawn(move || {
                for i in 0..6 {
                    vault
                        .set(&format!("t{t}.k{i}"), &Secret::new(format!("v{t}.{i}")))
                        .unwrap();
                }
            });
        }
    });
    let all = vault.all().unwrap();
    assert_eq!(all.len(), 48);
    for t in 0..8 {
        for i in 0..6 {
            assert_eq!(all[&format!("t{t}.k{i}")].expose(), format!("v{t}.{i}"));
        }
    }
    assert!(temps_in(dir.path()).is_empty());
}

const CHILD_MODE: &str = "CLAW_VAULT_TEST_CHILD";
const CHILD_DIR: &str = "CLAW_VAULT_TEST_DIR";
const CHILD_TAG: &str = "CLAW_VAULT_TEST_TAG";

/// This test binary, run to execute only `child_entry` with the given mode.
fn child(mode: &str, dir: &Path, tag: &str) -> Command {
    let module = module_path!();
    let path = module.split_once("::").map_or(module, |(_, rest)| rest);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        &format!("{path}::child_entry"),
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_MODE, mode)
    .env(CHILD_DIR, dir)
    .env(CHILD_TAG, tag)
    .stdin(Stdio::null());
    cmd
}

fn crash_key(i: usize) -> String {
    format!("crash.{i:06}")
}

fn crash_value(i: usize) -> String {
    // Large enough that a write takes a while, so kills often land inside one.
    format!("value-{i}-{}", "x".repeat(4096))
}

/// Run by the multi-process tests in a child process; does nothing when run directly.
#[test]
#[ignore = "helper: run in child processes by the multi-process tests"]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(CHILD_DIR).unwrap());
    let tag = std::env::var(CHILD_TAG).unwrap();
    let vault = Vault::new(&dir);
    match mode.as_str() {
        "set" => {
            for i in 0..8 {
                vault
                    .set(&format!("{tag}.k{i}"), &Secret::new(format!("{tag}-{i}")))
                    .unwrap();
            }
        }
        "crash" => {
            // Append crash.N keys in order until killed (or, as a bound, for 30 s).
            let mut i = vault
                .list()
                .unwrap()
                .iter()
                .filter(|k| k.starts_with("crash."))
                .count();
            let start = Instant::now();
            let mut first = true;
            while start.elapsed() < Duration::from_secs(30) {
                vault
                    .set(&crash_key(i), &Secret::new(crash_value(i)))
                    .unwrap();
                if first {
                    println!("CHILD-READY");
                    std::io::stdout().flush().unwrap();
                    first = false;
                }
                i += 1;
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn eight_processes_setting_their_own_keys_lose_nothing() {
    let (dir, vault) = new_vault();
    let children: Vec<_> = (0..8)
        .map(|p| {
            child("set", dir.path(), &format!("p{p}"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let all = vault.all().unwrap();
    assert_eq!(all.len(), 64, "{:?}", all.keys().collect::<Vec<_>>());
    for p in 0..8 {
        for i in 0..8 {
            assert_eq!(all[&format!("p{p}.k{i}")].expose(), format!("p{p}-{i}"));
        }
    }
    assert!(temps_in(dir.path()).is_empty());
}

/// The vault holds the seed keys and `crash.0 .. crash.(n-1)` with the right values; returns n.
fn check_consistent(vault: &Vault) -> usize {
    let all = vault.all().unwrap();
    assert_eq!(all["seed:a"].expose(), "alpha");
    assert_eq!(all["seed:b"].expose(), "beta");
    let n = all.keys().filter(|k| k.starts_with("crash.")).count();
    assert_eq!(all.len(), n + 2);
    for i in 0..n {
        assert_eq!(
            all[&crash_key(i)].expose(),
            crash_value(i),
            "key {i} of {n}"
        );
    }
    n
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_vault() {
    let (dir, vault) = new_vault();
    vault.set("seed:a", &Secret::from("alpha")).unwrap();
    vault.set("seed:b", &Secret::from("beta")).unwrap();
    let mut previous = 0;
    let mut killed_mid_write = 0;
    for round in 0..32 {
        let mut c = child("crash", dir.path(), "c")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("CHILD-READY") => break,
                Some(Ok(_)) => {}
                other => panic!("child ended before it was ready: {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_micros(random_u64() % 40_000));
        c.kill().unwrap();
        let status = c.wait().unwrap();
        assert!(!status.success(), "round {round}: child was not killed");
        if !temps_in(dir.path()).is_empty() {
            killed_mid_write += 1;
        }
        let n = check_consistent(&vault);
        assert!(n > previous, "round {round}: no progress ({n})");
        previous = n;
    }
    // The next write clears temp files the killed writers left.
    vault.set("seed:a", &Secret::from("alpha")).unwrap();
    assert!(temps_in(dir.path()).is_empty());
    check_consistent(&vault);
    // And the CLI agrees.
    let out = run(Command::new(age_tool("age"))
        .arg("-d")
        .arg("-i")
        .arg(vault.identity_path())
        .arg(vault.vault_path()));
    let got: BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
    assert_eq!(got.len(), previous + 2);
    eprintln!("crash test: {previous} writes, {killed_mid_write}/32 kills left a temp file");
}

/// The actions recorded in `dir`'s audit log, as `(actor, action, target)`.
fn audited(dir: &Path) -> Vec<(String, String, String)> {
    crate::audit::AuditLog::in_dir(dir)
        .tail(100)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let v = l.value();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("actor"), s("action"), s("target"))
        })
        .collect()
}

#[test]
fn a_vault_acting_for_someone_audits_every_change_and_reveal_itself() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path()).acting_as("dashboard:admin");
    vault.init().unwrap();
    vault.set("API_KEY", &Secret::from("s3cret-value")).unwrap();
    assert_eq!(
        vault.reveal("API_KEY").unwrap().unwrap().expose(),
        "s3cret-value"
    );
    vault.get("API_KEY").unwrap();
    vault.delete("API_KEY").unwrap();
    let got = audited(dir.path());
    let actions: Vec<&str> = got.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "vault.init",
            "vault.set",
            "vault.get.reveal",
            "vault.delete"
        ],
        "a plain get is not a reveal"
    );
    assert!(got.iter().all(|(who, _, _)| who == "dashboard:admin"));
    assert_eq!(got[1].2, "API_KEY");
    // Never the value.
    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(!text.contains("s3cret-value"));
    // Without an actor (the engine reading a step's secrets), nothing is recorded.
    Vault::new(dir.path())
        .set("OTHER", &Secret::from("x"))
        .unwrap();
    assert_eq!(audited(dir.path()).len(), 4);
}

#[test]
fn a_reveal_whose_audit_entry_cannot_be_written_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path()).acting_as("cli:me");
    vault.init().unwrap();
    vault.set("K", &Secret::from("v")).unwrap();
    // The audit log replaced by a directory: no entry can be appended.
    std::fs::remove_file(dir.path().join("audit.log")).unwrap();
    std::fs::create_dir(dir.path().join("audit.log")).unwrap();
    assert!(matches!(vault.reveal("K"), Err(VaultError::Audit { .. })));
}

#[test]
fn a_rotation_policy_set_is_audited_by_the_library() {
    let dir = tempfile::tempdir().unwrap();
    rotation::set_policy(dir.path(), "DB_PASS", 30, "cli:alice").unwrap();
    assert_eq!(
        audited(dir.path()),
        [(
            "cli:alice".to_owned(),
            "vault.rotation.policy_set".to_owned(),
            "DB_PASS".to_owned()
        )]
    );
}
