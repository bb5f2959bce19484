//! A passphrase-protected vault identity (`age-identity.txt.age`, as `age -p -a` writes it):
//! created by `vault init --passphrase`, converted by `vault passphrase set|remove`, unlocked
//! from `CLAW_VAULT_PASSPHRASE` or the terminal, and opened by the real `age` CLI both ways.
//! The `age` CLI reads passphrases from the terminal only: `tests/fixtures/pty_answer.py` runs
//! it (and claw, for the prompts) on a pseudo-terminal and types the answers.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

const PASS: &str = "correct horse battery staple";
const PASS_ENV: &str = "CLAW_VAULT_PASSPHRASE";
/// The unlock cost is scrypt's: most tests use a cheaper factor so the suite stays quick on a
/// loaded machine; `the_age_cli_opens_claws_protected_identity` uses the default (2^18).
const CHEAP: (&str, &str) = ("CLAW_VAULT_SCRYPT_LOG_N", "12");

/// A claw command with the passphrase variable cleared (and the cheap work factor).
fn claw_cmd(env: &Env, args: &[&str]) -> Command {
    let mut c = env.command(args);
    c.env_remove(PASS_ENV).env(CHEAP.0, CHEAP.1);
    c
}

fn claw_with(env: &Env, pass: &str, args: &[&str]) -> Ran {
    claw_cmd(env, args)
        .env(PASS_ENV, pass)
        .output()
        .expect("claw")
        .into()
}

/// claw in a new session, without a controlling terminal (so it cannot prompt).
fn claw_without_terminal(env: &Env, args: &[&str]) -> Ran {
    wrapped(&["setsid", "--wait"], &claw_cmd(env, args))
        .output()
        .expect("setsid claw")
        .into()
}

fn claw_stdin(env: &Env, extra: &[(&str, &str)], args: &[&str], stdin: &str) -> Ran {
    let mut c = claw_cmd(env, args);
    for (k, v) in extra {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("claw");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("claw").into()
}

fn age_decrypt(identity: &Path, file: &Path, pass: &str) -> Ran {
    let mut c = Command::new("age");
    c.args([OsStr::new("-d"), OsStr::new("-i"), identity.as_os_str()])
        .arg(file);
    on_pty(&c, &[pass])
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("age-identity"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_age_cli_opens_claws_protected_identity() {
    let env = Env::new();
    let mut init = env.command(&["vault", "init", "--passphrase"]);
    init.env(PASS_ENV, PASS).env_remove(CHEAP.0);
    let ran: Ran = init.output().expect("claw").into();
    ran.expect_code(0);
    assert!(
        ran.stdout.contains("passphrase-protected"),
        "{}",
        ran.stdout
    );
    assert_eq!(names(&env.home), ["age-identity.txt.age"]);
    let id = env.home.join("age-identity.txt.age");
    let text = read(&id);
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&id).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let mut set = env.command(&["vault", "set", "K1", "value-one"]);
    set.env(PASS_ENV, PASS);
    Ran::from(set.output().expect("claw")).expect_code(0);

    let out = age_decrypt(&id, &env.home.join("vault.enc"), PASS);
    out.expect_code(0);
    assert!(
        out.stdout.contains(r#"{"K1":"value-one"}"#),
        "{}",
        out.stdout
    );
    // One scrypt stanza, with the age CLI's default work factor.
    use base64::Engine as _;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let binary = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("armor");
    let header = String::from_utf8_lossy(&binary);
    let stanzas: Vec<&str> = header.lines().filter(|l| l.starts_with("-> ")).collect();
    assert_eq!(stanzas.len(), 1, "{stanzas:?}");
    assert!(
        stanzas[0].starts_with("-> scrypt ") && stanzas[0].ends_with(" 18"),
        "{stanzas:?}"
    );
}

#[test]
fn claw_reads_an_identity_protected_by_age_p() {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).expect("mkdir");
    let key = env.path("key.txt");
    assert!(
        Command::new("age-keygen")
            .arg("-o")
            .arg(&key)
            .stderr(Stdio::null())
            .status()
            .expect("age-keygen")
            .success()
    );
    let public = String::from_utf8(
        Command::new("age-keygen")
            .arg("-y")
            .arg(&key)
            .output()
            .expect("age-keygen -y")
            .stdout,
    )
    .expect("utf-8");
    // `age-keygen | age -p -a > age-identity.txt.age`, the passphrase typed twice.
    let mut p = Command::new("age");
    p.args(["-p", "-a", "-o"])
        .arg(env.home.join("age-identity.txt.age"))
        .arg(&key);
    on_pty(&p, &[PASS, PASS]).expect_code(0);
    let plain = env.write("plain.json", r#"{"SEED_KEY": "from age -r"}"#);
    assert!(
        Command::new("age")
            .args(["-r", public.trim(), "-o"])
            .arg(env.home.join("vault.enc"))
            .arg(&plain)
            .status()
            .expect("age -r")
            .success()
    );

    let got = claw_with(&env, PASS, &["vault", "get", "SEED_KEY", "--reveal"]);
    got.expect_code(0);
    assert_eq!(got.stdout, "from age -r\n");
    // Typed at claw's own prompt on the terminal.
    let typed = on_pty(
        &claw_cmd(&env, &["vault", "get", "SEED_KEY", "--reveal"]),
        &[PASS],
    );
    typed.expect_code(0);
    assert!(
        typed
            .stdout
            .contains("Passphrase for the vault identity age-identity.txt.age:"),
        "{}",
        typed.stdout
    );
    assert!(typed.stdout.contains("from age -r"), "{}", typed.stdout);
    // rotate-key on a terminal asks once: the new identity it wrote is not unlocked again.
    let rotated = on_pty(&claw_cmd(&env, &["vault", "rotate-key"]), &[PASS]);
    rotated.expect_code(0);
    assert_eq!(
        rotated
            .stdout
            .matches("Passphrase for the vault identity")
            .count(),
        1,
        "{}",
        rotated.stdout
    );
    // A write keeps the identity as it is, and the age CLI still opens the vault.
    claw_with(&env, PASS, &["vault", "set", "NEW", "n3w-value"]).expect_code(0);
    assert!(!env.home.join("age-identity.txt").exists());
    let out = age_decrypt(
        &env.home.join("age-identity.txt.age"),
        &env.home.join("vault.enc"),
        PASS,
    );
    out.expect_code(0);
    assert!(
        out.stdout.contains(r#""NEW":"n3w-value""#),
        "{}",
        out.stdout
    );
}

#[test]
fn a_wrong_or_missing_passphrase_changes_nothing() {
    let env = Env::new();
    claw_with(&env, PASS, &["vault", "init", "--passphrase"]).expect_code(0);
    claw_with(&env, PASS, &["vault", "set", "K1", "v1-value"]).expect_code(0);
    let before = (
        std::fs::read(env.home.join("vault.enc")).expect("vault"),
        std::fs::read(env.home.join("age-identity.txt.age")).expect("id"),
    );
    for args in [
        &["vault", "list"][..],
        &["vault", "set", "K2", "v2-value"],
        &["vault", "delete", "K1"],
        &["vault", "rotate-key"],
        &["vault", "passphrase", "remove"],
    ] {
        let wrong = claw_with(&env, "not the passphrase", args);
        wrong.expect_code(3);
        assert!(
            wrong.stderr.contains("wrong passphrase for")
                && wrong.stderr.contains("age-identity.txt.age")
                && wrong.stderr.contains("nothing was changed"),
            "{args:?}: {}",
            wrong.stderr
        );
        let none = claw_without_terminal(&env, args);
        none.expect_code(3);
        assert!(
            none.stderr
                .contains("is passphrase-protected and no passphrase was given")
                && none.stderr.contains("CLAW_VAULT_PASSPHRASE"),
            "{args:?}: {}",
            none.stderr
        );
    }
    // A wrong answer at the prompt: one clear error, no retry loop.
    let typed = on_pty(&claw_cmd(&env, &["vault", "list"]), &["nope"]);
    typed.expect_code(3);
    assert!(
        typed.stdout.contains("wrong passphrase"),
        "{}",
        typed.stdout
    );
    let after = (
        std::fs::read(env.home.join("vault.enc")).expect("vault"),
        std::fs::read(env.home.join("age-identity.txt.age")).expect("id"),
    );
    assert!(before == after, "a failed unlock changed a file");
    assert_eq!(names(&env.home), ["age-identity.txt.age"]);
}

#[test]
fn init_asks_twice_on_the_terminal() {
    let env = Env::new();
    let mismatch = on_pty(
        &claw_cmd(&env, &["vault", "init", "--passphrase"]),
        &["one thing", "another"],
    );
    mismatch.expect_code(2);
    assert!(
        mismatch.stdout.contains("the passphrases do not match"),
        "{}",
        mismatch.stdout
    );
    assert!(names(&env.home).is_empty(), "{:?}", names(&env.home));
    let ok = on_pty(
        &claw_cmd(&env, &["vault", "init", "--passphrase"]),
        &[PASS, PASS],
    );
    ok.expect_code(0);
    assert!(ok.stdout.contains("New passphrase"), "{}", ok.stdout);
    assert!(!ok.stdout.contains(PASS), "the passphrase was echoed");
    claw_with(&env, PASS, &["vault", "list"]).expect_code(0);
    // No terminal, no variable, no stdin flag: refused, nothing created.
    let other = Env::new();
    let refused = claw_without_terminal(&other, &["vault", "init", "--passphrase"]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("--passphrase-stdin"),
        "{}",
        refused.stderr
    );
    assert!(!other.home.join("age-identity.txt").exists());
}

#[test]
fn set_change_remove_and_rotate_keep_one_identity() {
    let env = Env::new();
    Ran::from(claw_cmd(&env, &["vault", "init"]).output().expect("init")).expect_code(0);
    claw_with(&env, "", &["vault", "set", "K1", "v1-value"]).expect_code(0);
    // An old plain identity from a rotation, before the passphrase is set.
    claw_with(&env, "", &["vault", "rotate-key"]).expect_code(0);

    let set = claw_stdin(
        &env,
        &[],
        &["vault", "passphrase", "set", "--passphrase-stdin"],
        &format!("{PASS}\n"),
    );
    set.expect_code(0);
    assert!(
        set.stdout.contains("age -d -i") && set.stderr.contains("still in clear"),
        "{}{}",
        set.stdout,
        set.stderr
    );
    let ids = names(&env.home);
    assert!(ids.contains(&"age-identity.txt.age".to_owned()), "{ids:?}");
    assert!(!ids.contains(&"age-identity.txt".to_owned()), "{ids:?}");
    let status = claw_cmd(&env, &["vault", "passphrase", "status"])
        .output()
        .expect("status");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("passphrase-protected (scrypt)"),
        "{status:?}"
    );
    assert_eq!(
        claw_with(&env, PASS, &["vault", "get", "K1", "--reveal"]).stdout,
        "v1-value\n"
    );

    // rotate-key keeps the protection (and the passphrase); the backup stays protected too.
    claw_with(&env, PASS, &["vault", "rotate-key"]).expect_code(0);
    let ids = names(&env.home);
    assert!(!ids.contains(&"age-identity.txt".to_owned()), "{ids:?}");
    assert!(
        ids.iter()
            .any(|n| n.starts_with("age-identity.txt.age.") && n.ends_with(".bak")),
        "{ids:?}"
    );
    assert_eq!(
        claw_with(&env, PASS, &["vault", "get", "K1", "--reveal"]).stdout,
        "v1-value\n"
    );
    let out = age_decrypt(
        &env.home.join("age-identity.txt.age"),
        &env.home.join("vault.enc"),
        PASS,
    );
    out.expect_code(0);

    // Changing it: the variable holds the old one, stdin the new one.
    let new = "a new and longer passphrase";
    claw_stdin(
        &env,
        &[(PASS_ENV, PASS)],
        &["vault", "passphrase", "set", "--passphrase-stdin"],
        new,
    )
    .expect_code(0);
    claw_with(&env, PASS, &["vault", "list"]).expect_code(3);
    claw_with(&env, new, &["vault", "list"]).expect_code(0);

    claw_with(&env, new, &["vault", "passphrase", "remove"]).expect_code(0);
    assert!(env.home.join("age-identity.txt").exists());
    assert!(!env.home.join("age-identity.txt.age").exists());
    let plain = claw_without_terminal(&env, &["vault", "get", "K1", "--reveal"]);
    plain.expect_code(0);
    assert_eq!(plain.stdout, "v1-value\n");
    let again = claw_without_terminal(&env, &["vault", "passphrase", "remove"]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("is not passphrase-protected"),
        "{}",
        again.stderr
    );
    // Each conversion is in the audit log, by file name.
    let audit = read(&env.home.join("audit.log"));
    for action in ["vault.passphrase.set", "vault.passphrase.remove"] {
        assert!(audit.contains(action), "{action} missing");
    }
    assert!(!audit.contains(PASS) && !audit.contains(new));
}

#[test]
fn steps_never_see_the_passphrase_and_doctor_shows_protection() {
    let env = Env::new();
    claw_with(&env, PASS, &["vault", "init", "--passphrase"]).expect_code(0);
    claw_with(&env, PASS, &["vault", "set", "TOKEN", "tok-3n-value"]).expect_code(0);
    env.workflow(
        "w",
        r#"steps:
  - name: s
    command: echo "token=${{ secrets.TOKEN }} pass=${CLAW_VAULT_PASSPHRASE:-unset}"
"#,
    );
    let ran = claw_with(&env, PASS, &["workflow", "run", "w", "--json"]);
    ran.expect_code(0);
    assert_eq!(
        step(&ran.json(), "s")["stdout"],
        "token=*** pass=unset\n",
        "{}",
        ran.stderr
    );
    let doctor = claw_without_terminal(&env, &["doctor"]);
    assert!(
        doctor
            .stdout
            .contains("age-identity.txt.age: passphrase-protected (scrypt)"),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains("locked: set CLAW_VAULT_PASSPHRASE"),
        "{}",
        doctor.stdout
    );
    let doctor = claw_with(&env, PASS, &["doctor"]);
    assert!(doctor.stdout.contains("1 secret(s)"), "{}", doctor.stdout);
}
