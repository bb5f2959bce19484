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
            "n",
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

/// aiosmtpd with STARTTLS and AUTH (user `claw`, password `smtp-pass-123`), writing each mail
/// as a JSON line (as tests/messaging.rs runs it).
const SMTPD: &str = r#"
import json, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
port, out, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps({"to": envelope.rcpt_tos, "tls": session.ssl is not None,
                "data": envelope.content.decode("utf8", "replace")}) + "\n")
        return "250 OK queued as 7"
def auth(server, session, envelope, mechanism, data):
    return AuthResult(success=data.login == b"claw" and data.password == b"smtp-pass-123", handled=False)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=auth,
               auth_require_tls=True, require_starttls=True, tls_context=ctx)
c.start()
print("ready", flush=True)
time.sleep(600)
"#;

#[test]
fn setup_email_logs_in_sends_a_test_message_then_stores_the_settings() {
    use std::io::BufRead as _;
    let env = Env::new();
    let python = std::env::var("CLAW_AIOSMTPD_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/target/aiosmtpd-venv/bin/python3",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = env.write("cert.pem", &certified.cert.pem());
    let key = env.write("key.pem", &certified.signing_key.serialize_pem());
    let script = env.write("smtpd.py", SMTPD);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let out = env.path("mail.jsonl");
    let mut server = std::process::Command::new(&python)
        .arg(&script)
        .arg(&port)
        .arg(&out)
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("aiosmtpd (scripts/test.sh installs it into target/aiosmtpd-venv)");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let mut cmd = env.command(&["setup", "email"]);
    cmd.env("SMTP_TLS_VERIFY", "false")
        .env_remove("SMTP_HOST")
        .env_remove("SMTP_USER");
    let answers = |pass: &'static str| {
        vec![
            "127.0.0.1",
            port.as_str(),
            "claw",
            pass,
            "claw@example.org",
            "",
            "ops@example.org",
            // The vault is created to keep them: no passphrase.
            "n",
        ]
    };
    // A wrong password: the login fails, nothing is written.
    let ran = on_pty_prompt(&cmd, &answers("wrong-pass-999"), Some(PROMPT));
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(
        ran.stdout.contains("the SMTP login failed"),
        "{}",
        ran.stdout
    );
    assert!(!env.home.join("vault.enc").exists());
    assert!(!out.exists());
    let ran = on_pty_prompt(&cmd, &answers("smtp-pass-123"), Some(PROMPT));
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(ran.code, 0, "{}", ran.stdout);
    assert!(
        !ran.stdout.contains("smtp-pass-123"),
        "the password was echoed"
    );
    let mail = std::fs::read_to_string(&out).unwrap();
    assert!(
        mail.contains("ops@example.org") && mail.contains("\"tls\": true"),
        "{mail}"
    );
    assert!(mail.contains("claw setup: test message"), "{mail}");
    let keys = env.claw(&["vault", "list"]);
    for k in [
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_USER",
        "SMTP_PASS",
        "SMTP_FROM",
    ] {
        assert!(keys.stdout.contains(k), "{k}: {}", keys.stdout);
    }
    let check = env.claw(&["setup", "check"]);
    assert!(check.stdout.contains("[x] email"), "{}", check.stdout);
}
