//! The SSH fleet against real OpenSSH servers: each test starts `/usr/sbin/sshd` on a loopback
//! port with its own host key, config and authorized key (scripts/test.sh installs
//! openssh-server), and runs `claw ssh` (or the library's pool) against it. The hosts are this
//! machine, so what a command leaves running is checked with `pgrep`.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const SSHD: &str = "/usr/sbin/sshd";

fn have_sshd() -> bool {
    if Path::new(SSHD).is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CLAW_SKIP_SSH").is_some(),
        "{SSHD} is missing: scripts/test.sh installs openssh-server (or set CLAW_SKIP_SSH=1)"
    );
    false
}

fn keygen(path: &Path, kind: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "claw-test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// `ssh-keygen -lf`'s SHA256 fingerprint of a public key file.
fn fingerprint(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running sshd with its own files under `dir`.
struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Sshd {
    /// Starts sshd on `port` (0: a free one) with the host key `dir/hostkey` (made if missing);
    /// `dir/client` is the authorized client key.
    fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, false)
    }

    /// As [`Sshd::start`]; `passwords`: password authentication allowed (against the system's
    /// accounts, as a real host).
    fn start_with(dir: &Path, port: u16, passwords: bool) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let hostkey = dir.join("hostkey");
        if !hostkey.exists() {
            keygen(&hostkey, "ed25519");
        }
        let client = dir.join("client");
        if !client.exists() {
            keygen(&client, "ed25519");
        }
        std::fs::copy(client.with_extension("pub"), dir.join("authorized_keys")).unwrap();
        let port = if port == 0 { free_port() } else { port };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication {}\n\
             KbdInteractiveAuthentication no\nMaxSessions 10\nLogLevel ERROR\nSubsystem sftp internal-sftp\n",
            hostkey.display(),
            dir.join("sshd.pid").display(),
            dir.join("authorized_keys").display(),
            if passwords { "yes" } else { "no" },
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let up = wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "sshd did not start: {}",
            read(&dir.join("sshd.log"))
        );
        Self {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    fn fingerprint(&self) -> String {
        fingerprint(&self.dir.join("hostkey.pub"))
    }

    fn client_key(&self) -> PathBuf {
        self.dir.join("client")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An environment whose HOME is its own (no ~/.ssh of the machine is read) with hosts.yaml.
fn fleet(env: &Env, hosts: &[(&str, u16, &Path, &str)]) {
    let mut y = String::from("hosts:\n");
    for (alias, port, key, groups) in hosts {
        y.push_str(&format!(
            "  - alias: {alias}\n    hostname: 127.0.0.1\n    port: {port}\n    username: root\n    key_file: {}\n    groups: [{groups}]\n",
            key.display()
        ));
    }
    std::fs::write(env.root.join("hosts.yaml"), y).unwrap();
}

fn claw(env: &Env, args: &[&str]) -> Ran {
    env.command(args)
        .env("HOME", env.path("userhome"))
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AUTO_ADD_HOST_KEYS")
        .output()
        .unwrap()
        .into()
}

fn trust(env: &Env, alias: &str, fp: &str) {
    claw(env, &["ssh", "trust", alias, "--fingerprint", fp]).expect_code(0);
}

#[test]
fn unknown_key_refused_then_trusted_then_run() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    let fp = sshd.fingerprint();

    let r = claw(&env, &["ssh", "run", "box", "--", "echo", "hi"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains("is not known") && r.stdout.contains(&fp),
        "{r:?}"
    );
    assert!(r.stdout.contains("claw ssh trust box"), "{r:?}");

    // A wrong fingerprint pins nothing.
    let bad = claw(
        &env,
        &["ssh", "trust", "box", "--fingerprint", "SHA256:AAAA"],
    );
    bad.expect_code(1);
    assert!(bad.stderr.contains("not pinned"), "{bad:?}");

    trust(&env, "box", &fp);
    let pins = read(&env.home.join("known_hosts"));
    assert!(
        pins.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)),
        "{pins}"
    );

    let r = claw(
        &env,
        &[
            "ssh",
            "run",
            "lab",
            "--json",
            "--",
            "echo hi; echo err >&2; exit 3",
        ],
    );
    r.expect_code(1);
    let v = r.json();
    assert_eq!(v[0]["host"], "box");
    assert_eq!(v[0]["stdout"], "hi\n");
    assert_eq!(v[0]["stderr"], "err\n");
    assert_eq!(v[0]["exit_code"], 3);
    assert_eq!(v[0]["ok"], false);
    claw(&env, &["ssh", "run", "box", "true"]).expect_code(0);
    claw(&env, &["ssh", "test", "all"]).expect_code(0);

    let audit = read(&env.home.join("audit.log"));
    assert!(audit.contains("\"ssh.hostkey.refused\""), "{audit}");
    assert!(audit.contains("\"ssh.trust\""), "{audit}");
    assert_eq!(audit.matches("\"ssh.run\"").count(), 3, "{audit}");
    claw(&env, &["audit", "verify"]).expect_code(0);
}

#[test]
fn changed_host_key_is_refused_loudly() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let mut sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    claw(&env, &["ssh", "run", "box", "true"]).expect_code(0);

    // The same address answers with another key (a reinstall, or a man in the middle).
    sshd.stop();
    keygen(&env.path("sshd/hostkey"), "ed25519");
    let sshd2 = Sshd::start(&env.path("sshd"), sshd.port);
    let r = claw(&env, &["ssh", "run", "box", "touch", "/tmp/should-not-run"]);
    r.expect_code(1);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{r:?}");
    assert!(r.stdout.contains(&sshd2.fingerprint()), "{r:?}");
    // trust does not overwrite a pin either.
    let t = claw(
        &env,
        &["ssh", "trust", "box", "--fingerprint", &sshd2.fingerprint()],
    );
    t.expect_code(1);
    assert!(t.stderr.contains("contradicts"), "{t:?}");
}

#[test]
fn user_known_hosts_hashed_and_revoked_entries() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    // ~/.ssh/known_hosts with a hashed [host]:port entry, as `ssh-keygen -H` writes it.
    let ssh_dir = env.path("userhome/.ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let pubkey = read(&sshd.dir.join("hostkey.pub"));
    let mut words = pubkey.split_whitespace();
    let (kt, b64) = (words.next().unwrap(), words.next().unwrap());
    let kh = ssh_dir.join("known_hosts");
    std::fs::write(&kh, format!("[127.0.0.1]:{} {kt} {b64}\n", sshd.port)).unwrap();
    let ok = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(read(&kh).starts_with("|1|"), "{}", read(&kh));
    claw(&env, &["ssh", "run", "box", "true"]).expect_code(0);

    // A revocation in the data directory wins over the pin.
    std::fs::create_dir_all(&env.home).unwrap();
    std::fs::write(
        env.home.join("known_hosts"),
        format!("@revoked * {kt} {b64}\n"),
    )
    .unwrap();
    let r = claw(&env, &["ssh", "run", "box", "true"]);
    r.expect_code(1);
    assert!(r.stdout.contains("REVOKED"), "{r:?}");

    // Only a certificate authority covers the host (claw verifies no certificates): refused
    // with the cause and the line, even with SSH_AUTO_ADD_HOST_KEYS, and nothing is pinned.
    std::fs::write(
        env.home.join("known_hosts"),
        format!("@cert-authority [127.0.0.1]:* {kt} {b64}\n"),
    )
    .unwrap();
    std::fs::remove_file(&kh).unwrap();
    let r: Ran = env
        .command(&["ssh", "run", "box", "true"])
        .env("HOME", env.path("userhome"))
        .env_remove("SSH_AUTH_SOCK")
        .env("SSH_AUTO_ADD_HOST_KEYS", "true")
        .output()
        .unwrap()
        .into();
    r.expect_code(1);
    assert!(
        r.stdout.contains("certificate authority (@cert-authority)")
            && r.stdout.contains("known_hosts:1")
            && r.stdout.contains(&sshd.fingerprint()),
        "{r:?}"
    );
    assert!(!read(&env.home.join("known_hosts")).contains(&format!("]:{} ", sshd.port)));
}

#[test]
fn unreachable_host_times_out_and_one_host_down_among_several() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    let closed = free_port();
    let key = sshd.client_key();
    let mut y = String::from("hosts:\n");
    for (alias, port) in [("a", sshd.port), ("down", closed), ("c", sshd.port)] {
        y.push_str(&format!(
            "  - {{alias: {alias}, hostname: 127.0.0.1, port: {port}, key_file: {}, groups: [web]}}\n",
            key.display()
        ));
    }
    // A non-routable address: no answer at all.
    y.push_str(&format!(
        "  - {{alias: void, hostname: 10.255.255.1, key_file: {}}}\n",
        key.display()
    ));
    std::fs::write(env.root.join("hosts.yaml"), y).unwrap();
    trust(&env, "a", &sshd.fingerprint());

    let r = claw(&env, &["ssh", "run", "web", "--json", "--", "hostname"]);
    r.expect_code(1);
    let v = r.json();
    let by = |alias: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["host"] == alias)
            .unwrap()
            .clone()
    };
    assert_eq!(by("a")["ok"], true);
    assert_eq!(by("c")["ok"], true);
    assert_eq!(by("down")["ok"], false);
    assert!(
        by("down")["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect to down"),
        "{v}"
    );

    let started = Instant::now();
    let r = claw(&env, &["ssh", "run", "void", "true"]);
    let took = started.elapsed();
    r.expect_code(1);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(r.stdout.contains("cannot connect to void"), "{r:?}");
}

#[test]
fn timed_out_command_leaves_nothing_on_the_host() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    let marker = format!("{}", 100_000 + std::process::id() % 800_000);
    let started = Instant::now();
    // Two processes, neither exec'd by the shell: the whole group must go.
    let cmd = format!("sleep {marker}1 & sleep {marker}2; echo never");
    let r = claw(&env, &["ssh", "run", "box", "-t", "2", "--", &cmd]);
    r.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(r.stdout.contains("timed out after 2s"), "{r:?}");
    assert!(!r.stdout.contains("never"), "{r:?}");
    assert!(
        none_running(&format!("sleep {marker}"), Duration::from_secs(5)),
        "a process of the command is still running on the host"
    );
}

#[test]
fn pool_reuses_one_connection_for_200_commands() {
    if !have_sshd() {
        return;
    }
    use claw::ssh::{Command as SshCommand, Pool, Registry, Settings};
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    let reg = Registry::find(&env.root, &env.home).unwrap();
    let host = reg.get("box").unwrap().clone();
    let mut settings = Settings::from_env(&env.home, "test");
    settings.user_ssh_dir = None;
    let pool = Pool::new(settings);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    rt.block_on(async {
        for i in 0..200 {
            let cmd = SshCommand {
                command: format!("echo {i}"),
                env: vec![("V".into(), "it's".into())],
                timeout: Duration::from_secs(10),
                sudo: false,
            };
            let out = pool.run(&host, &cmd, &cancel, &mut |_, _| {}).await;
            assert!(out.ok(), "command {i}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{i}\n"));
        }
        // More at once than sshd's MaxSessions (10): they queue for channels, none fails.
        let cmd = SshCommand {
            command: "echo \"$V\"; sleep 0.2".into(),
            env: vec![("V".into(), "it's".into())],
            timeout: Duration::from_secs(20),
            sudo: false,
        };
        let runs = (0..25).map(|_| {
            let (pool, host, cmd, cancel) = (&pool, &host, &cmd, &cancel);
            async move { pool.run(host, cmd, cancel, &mut |_, _| {}).await }
        });
        for out in futures_util::future::join_all(runs).await {
            assert!(out.ok(), "{out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "it's\n");
        }
        pool.close_all().await;
    });
    assert_eq!(pool.opened(), 1);
}

#[test]
fn hosts_yaml_errors_and_unknown_targets() {
    let env = Env::new();
    std::fs::write(
        env.root.join("hosts.yaml"),
        "hosts:\n  - alias: a\n    port: 99999\n  - {alias: b, hostname: x, auth: pasword}\n",
    )
    .unwrap();
    let r = claw(&env, &["ssh", "hosts"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("hosts.yaml:2:5") && r.stderr.contains("needs a `hostname`"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("hosts.yaml:3:11") && r.stderr.contains("`port`"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("hosts.yaml:4:") && r.stderr.contains("did you mean `password`"),
        "{r:?}"
    );

    std::fs::write(
        env.root.join("hosts.yaml"),
        "hosts:\n  - {alias: web1, hostname: h1, groups: web}\n  - {alias: db1, hostname: h2, groups: [db]}\n",
    )
    .unwrap();
    let r = claw(&env, &["ssh", "run", "wbe", "uptime"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("No hosts or groups match target: wbe"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("hosts: web1, db1") && r.stderr.contains("groups: all, db, web"),
        "{r:?}"
    );
    let g = claw(&env, &["ssh", "groups", "--json"]);
    g.expect_code(0);
    assert_eq!(g.json()["all"], serde_json::json!(["web1", "db1"]));
    let h = claw(&env, &["ssh", "hosts", "--json"]);
    assert_eq!(h.json()[0]["port"], 22);
    assert_eq!(h.json()[0]["username"], "root");
}

#[test]
fn health_writes_the_seed_shape() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    let closed = free_port();
    fleet(
        &env,
        &[
            ("box", sshd.port, &sshd.client_key(), "lab"),
            ("down", closed, &sshd.client_key(), "lab"),
        ],
    );
    trust(&env, "box", &sshd.fingerprint());
    let r = claw(&env, &["ssh", "health", "--json"]);
    r.expect_code(1);
    let file: serde_json::Value =
        serde_json::from_str(&read(&env.home.join("ssh/health.json"))).unwrap();
    assert_eq!(file, r.json());
    assert_eq!(file["all_ok"], false);
    let hosts = file["hosts"].as_array().unwrap();
    assert_eq!(hosts[0]["alias"], "box");
    assert_eq!(hosts[0]["ping_ok"], true);
    assert_eq!(hosts[0]["ssh_ok"], true);
    assert!(
        hosts[0]["uptime"]
            .as_str()
            .unwrap()
            .contains("load average"),
        "{file}"
    );
    assert!(hosts[0]["latency_ms"].is_number());
    assert_eq!(hosts[1]["ping_ok"], false);
    assert!(hosts[1]["error"].is_string());
    assert!(file["timestamp"].is_string());
}

/// `claw workflow run NAME --json` with this environment's HOME.
fn run_workflow(env: &Env, name: &str, args: &[&str]) -> (Ran, serde_json::Value) {
    let mut a = vec!["workflow", "run", name, "--json"];
    a.extend_from_slice(args);
    let r = claw(env, &a);
    let v = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    (r, v)
}

#[test]
fn ssh_step_outputs_min_success_and_quoting() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    let closed = free_port();
    fleet(
        &env,
        &[
            ("box", sshd.port, &sshd.client_key(), "web"),
            ("box2", sshd.port, &sshd.client_key(), "web"),
            ("down", closed, &sshd.client_key(), "web"),
        ],
    );
    trust(&env, "box", &sshd.fingerprint());
    env.workflow(
        "fleet",
        r#"params:
  word: {type: string, default: "it's $(touch /tmp/claw-ssh-injected) ok"}
  need: {type: string, default: "2"}
steps:
  - name: hello
    type: ssh
    hosts: web
    command: echo ${{ params.word }}; echo "mode=$MODE"
    env: {MODE: fast}
    min_success: ${{ params.need }}
    parallel: 2
  - name: after
    command: echo ${{ steps.hello.outputs.ok_hosts | join(',') }}
"#,
    );
    let _ = std::fs::remove_file("/tmp/claw-ssh-injected");
    let (r, _) = run_workflow(&env, "fleet", &[]);
    assert_eq!(r.code, 2, "min_success is not a template field: {r:?}");
    assert!(r.stderr.contains("min_success"), "{r:?}");

    env.workflow(
        "fleet",
        r#"params:
  word: {type: string, default: "it's $(touch /tmp/claw-ssh-injected) ok"}
steps:
  - name: hello
    type: ssh
    hosts: web
    command: echo ${{ params.word }}; echo "mode=$MODE"
    env: {MODE: fast}
    min_success: 2
    parallel: 2
  - name: after
    command: echo ${{ steps.hello.outputs.ok_hosts | join(',') }}
"#,
    );
    let (r, run2) = run_workflow(&env, "fleet", &[]);
    r.expect_code(0);
    let hello = step(&run2, "hello");
    let o = &hello["outputs"];
    assert_eq!(
        o["ok_hosts"],
        serde_json::json!(["box", "box2"]),
        "{hello:#}"
    );
    assert_eq!(o["failed_hosts"], serde_json::json!(["down"]));
    assert_eq!(
        o["hosts"]["box"]["stdout"],
        "it's $(touch /tmp/claw-ssh-injected) ok\nmode=fast\n"
    );
    assert_eq!(o["hosts"]["box"]["exit_code"], 0);
    assert_eq!(o["hosts"]["down"]["ok"], false);
    assert!(
        !Path::new("/tmp/claw-ssh-injected").exists(),
        "a value ran as code on the host"
    );
    assert_eq!(step(&run2, "after")["stdout"], "box,box2\n");
    let log = claw(
        &env,
        &["run", "logs", run2["id"].as_str().unwrap(), "hello"],
    );
    assert!(
        log.stdout.contains("[box] mode=fast") && log.stdout.contains("[down] FAILED"),
        "{log:?}"
    );

    // The default is every host: one down fails the step.
    let text = read(&env.root.join("workflows/fleet.yaml")).replace("    min_success: 2\n", "");
    std::fs::write(env.root.join("workflows/fleet.yaml"), text).unwrap();
    let (r, run3) = run_workflow(&env, "fleet", &[]);
    r.expect_code(1);
    assert_eq!(step(&run3, "hello")["status"], "failed");
    assert_eq!(
        step(&run3, "hello")["message"],
        "2 of 3 hosts succeeded, 3 needed; failed: down"
    );
}

#[test]
fn passphrase_key_from_the_vault_and_agent_auth() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let dir = env.path("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    // The authorized client key is protected by a passphrase.
    let pass = "correct-horse-battery-staple";
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", pass, "-C", "claw-test", "-f"])
        .arg(dir.join("client"))
        .status()
        .unwrap();
    assert!(ok.success());
    let sshd = Sshd::start(&dir, 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());

    let r = claw(&env, &["ssh", "run", "box", "true"]);
    r.expect_code(1);
    assert!(r.stdout.contains("ssh:box:passphrase"), "{r:?}");

    claw(&env, &["vault", "init"]).expect_code(0);
    claw(&env, &["vault", "set", "ssh:box:passphrase", pass]).expect_code(0);
    let r = claw(&env, &["ssh", "run", "box", "--", "echo", "in"]);
    r.expect_code(0);
    assert!(r.stdout.contains("in"), "{r:?}");
    assert!(!read(&env.home.join("audit.log")).contains(pass));

    // The agent holds the (unlocked) key; the host says `auth: agent`.
    let sock = env.path("agent.sock");
    let out = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .arg("-s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pid: u32 = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let unlocked = env.path("unlocked");
    std::fs::copy(dir.join("client"), &unlocked).unwrap();
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", pass, "-N", "", "-f"])
        .arg(&unlocked)
        .status()
        .unwrap();
    assert!(ok.success());
    let added = Command::new("ssh-add")
        .arg(&unlocked)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    std::fs::write(
        env.root.join("hosts.yaml"),
        format!(
            "hosts:\n  - {{alias: box, hostname: 127.0.0.1, port: {}, auth: agent}}\n",
            sshd.port
        ),
    )
    .unwrap();
    let r: Ran = env
        .command(&["ssh", "run", "box", "--", "echo", "via-agent"])
        .env("HOME", env.path("userhome"))
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap()
        .into();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    r.expect_code(0);
    assert!(r.stdout.contains("via-agent"), "{r:?}");
    let r = claw(&env, &["ssh", "run", "box", "true"]);
    r.expect_code(1);
    assert!(r.stdout.contains("SSH_AUTH_SOCK is not set"), "{r:?}");
}

#[test]
fn huge_and_binary_output_is_capped_and_fail_fast_stops_the_rest() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(
        &env,
        &[
            ("box", sshd.port, &sshd.client_key(), "lab"),
            ("box2", sshd.port, &sshd.client_key(), "lab"),
        ],
    );
    trust(&env, "box", &sshd.fingerprint());
    let started = Instant::now();
    let r = claw(
        &env,
        &[
            "ssh",
            "run",
            "box",
            "--json",
            "--",
            "head -c 100000000 /dev/urandom; echo done >&2",
        ],
    );
    r.expect_code(0);
    let v = r.json();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["stderr"], "done\n");
    let kept = v[0]["stdout"].as_str().unwrap().len();
    assert!((1 << 20..4 << 20).contains(&kept), "kept {kept}");
    assert!(started.elapsed() < Duration::from_secs(120));

    env.workflow(
        "ff",
        "steps:\n  - name: s\n    type: ssh\n    hosts: lab\n    parallel: 1\n    fail_fast: true\n    command: exit 4\n",
    );
    let (r, run) = run_workflow(&env, "ff", &[]);
    r.expect_code(1);
    let o = &step(&run, "s")["outputs"]["hosts"];
    assert_eq!(o["box"]["exit_code"], 4);
    assert!(
        o["box2"]["error"].as_str().unwrap().contains("fail_fast"),
        "{o}"
    );
    // Only the first host ran a command.
    let audit = read(&env.home.join("audit.log"));
    assert_eq!(
        audit.matches("\"command\":\"exit 4\"").count(),
        1,
        "{audit}"
    );
}

#[test]
fn ssh_step_timeout_stops_the_remote_command() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    let marker = format!("{}", 200_000 + std::process::id() % 700_000);
    env.workflow(
        "slow",
        &format!("steps:\n  - name: s\n    type: ssh\n    hosts: box\n    timeout: 2s\n    command: sleep {marker}3; echo never\n"),
    );
    let started = Instant::now();
    let (r, run) = run_workflow(&env, "slow", &[]);
    r.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(20));
    let s = step(&run, "s");
    assert_eq!(s["status"], "failed", "{s:#}");
    assert!(
        none_running(&format!("sleep {marker}3"), Duration::from_secs(5)),
        "the step's command is still running on the host"
    );
}

#[test]
fn ssh_step_fields_are_checked_with_positions() {
    let env = Env::new();
    env.workflow(
        "a",
        "steps:\n  - name: a\n    type: ssh\n    command: uptime\n",
    );
    let r = claw(&env, &["workflow", "validate", "a"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("a.yaml:2:") && r.stderr.contains("has no `hosts`"),
        "{r:?}"
    );
    env.workflow(
        "b",
        "steps:\n  - name: a\n    type: ssh\n    hosts: web\n    command: uptime\n    min_success: 150%\n    parallel: 0\n    fail_fast: maybe\n    sudo: yes please\n",
    );
    let r = claw(&env, &["workflow", "validate", "b"]);
    r.expect_code(2);
    let e = &r.stderr;
    assert!(e.contains("b.yaml:6:18") && e.contains("percentage"), "{e}");
    assert!(e.contains("b.yaml:7:15") && e.contains("`parallel`"), "{e}");
    assert!(
        e.contains("b.yaml:8:16") && e.contains("`fail_fast`"),
        "{e}"
    );
    assert!(e.contains("b.yaml:9:11") && e.contains("`sudo`"), "{e}");
    // With the file valid, --env checks the target against hosts.yaml.
    env.workflow(
        "c",
        "steps:\n  - name: a\n    type: ssh\n    hosts: web\n    command: uptime\n",
    );
    claw(&env, &["workflow", "validate", "c"]).expect_code(0);
    std::fs::write(
        env.root.join("hosts.yaml"),
        "hosts:\n  - {alias: db1, hostname: h}\n",
    )
    .unwrap();
    let r = claw(&env, &["workflow", "validate", "c", "--env"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("No hosts or groups match target: web"),
        "{r:?}"
    );
    // It shows as an ssh step.
    let shown = claw(&env, &["workflow", "show", "c", "--json"]);
    shown.expect_code(0);
    assert_eq!(shown.json()["steps"][0]["type"], "ssh", "{}", shown.stdout);
}

#[test]
fn cron_ssh_job_runs_on_the_target() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    let r = claw(
        &env,
        &[
            "cron",
            "add",
            "up",
            "every 1h",
            "echo remote-$((6*7))",
            "--type",
            "ssh",
        ],
    );
    r.expect_code(2);
    assert!(r.stderr.contains("--arg target="), "{r:?}");
    let r = claw(
        &env,
        &[
            "cron",
            "add",
            "up",
            "every 1h",
            "echo x",
            "--type",
            "ssh",
            "--arg",
            "target=nope",
        ],
    );
    r.expect_code(2);
    assert!(
        r.stderr.contains("No hosts or groups match target: nope"),
        "{r:?}"
    );
    claw(
        &env,
        &[
            "cron",
            "add",
            "up",
            "every 1h",
            "echo remote-$((6*7))",
            "--type",
            "ssh",
            "--arg",
            "target=lab",
        ],
    )
    .expect_code(0);
    let r = claw(&env, &["cron", "run", "up"]);
    r.expect_code(0);
    let logs = claw(&env, &["cron", "logs", "up"]);
    let all = format!("{}{}{}", r.stdout, logs.stdout, logs.stderr);
    assert!(
        all.contains("── box: exit 0") && all.contains("remote-42"),
        "{all}"
    );
    assert!(read(&env.home.join("audit.log")).contains("\"ssh.run\""));
}

#[test]
fn auto_add_host_keys_pins_on_first_use_and_audits_it() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    let run = |auto: bool| -> Ran {
        let mut c = env.command(&["ssh", "run", "box", "true"]);
        c.env("HOME", env.path("userhome"))
            .env_remove("SSH_AUTH_SOCK");
        if auto {
            c.env("SSH_AUTO_ADD_HOST_KEYS", "true");
        } else {
            c.env_remove("SSH_AUTO_ADD_HOST_KEYS");
        }
        c.output().unwrap().into()
    };
    run(true).expect_code(0);
    let pins = read(&env.home.join("known_hosts"));
    assert!(
        pins.contains(&format!("[127.0.0.1]:{} ssh-ed25519", sshd.port)),
        "{pins}"
    );
    let audit = read(&env.home.join("audit.log"));
    assert!(
        audit.contains("\"ssh.trust\"") && audit.contains("SSH_AUTO_ADD_HOST_KEYS"),
        "{audit}"
    );
    assert!(audit.contains(&sshd.fingerprint()), "{audit}");
    // Pinned now: it connects without the setting, and a changed key is refused even with it.
    run(false).expect_code(0);
    std::fs::write(
        env.home.join("known_hosts"),
        pins.replace(
            pins.split_whitespace().nth(2).unwrap(),
            "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        ),
    )
    .unwrap();
    let r = run(true);
    r.expect_code(1);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{r:?}");
}

/// Whether, within `within`, no process's command line matches `pattern` (`pgrep -f`).
fn none_running(pattern: &str, within: Duration) -> bool {
    wait_for(within, || {
        let out = Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .unwrap();
        out.stdout.is_empty().then_some(())
    })
    .is_some()
}

/// The pids of `parent`'s children.
fn children(parent: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &parent.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_host_that_stops_answering_mid_command_is_ended_by_keepalives() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    let child = env
        .command(&[
            "ssh",
            "run",
            "box",
            "-t",
            "60",
            "--",
            "echo started; sleep 50",
        ])
        .env("HOME", env.path("userhome"))
        .env("CLAW_SSH_KEEPALIVE", "1s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The connection's sshd processes (the listener's children and theirs), once it is up.
    let listener = sshd.child.id();
    let session = wait_for(Duration::from_secs(10), || {
        let mut pids = children(listener);
        let grand: Vec<u32> = pids.iter().flat_map(|p| children(*p)).collect();
        pids.extend(grand.iter().copied());
        (!grand.is_empty()).then_some(pids)
    })
    .expect("the session's sshd processes");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    for p in &session {
        let _ = Command::new("kill")
            .args(["-STOP", &p.to_string()])
            .status();
    }
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    for p in &session {
        let _ = Command::new("kill")
            .args(["-CONT", &p.to_string()])
            .status();
    }
    let r: Ran = out.into();
    r.expect_code(1);
    assert!(took < Duration::from_secs(20), "took {took:?}: {r:?}");
    assert!(r.stdout.contains("FAILED"), "{r:?}");
}

#[test]
fn upload_and_download_over_sftp_with_mode_and_checksums() {
    if !have_sshd() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = env.path("payload.bin");
    std::fs::write(&local, &data).unwrap();
    // The "host" is this machine: the remote path is a local one.
    let remote = env.path("remote/deployed.bin");
    std::fs::create_dir_all(remote.parent().unwrap()).unwrap();
    std::fs::write(&remote, b"old").unwrap();
    let r = claw(
        &env,
        &[
            "ssh",
            "upload",
            "lab",
            local.to_str().unwrap(),
            remote.to_str().unwrap(),
            "--mode",
            "750",
        ],
    );
    r.expect_code(0);
    assert!(r.stdout.contains("300000 bytes"), "{r:?}");
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    assert_eq!(
        std::fs::metadata(&remote).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    // Nothing is left beside the target.
    assert_eq!(
        std::fs::read_dir(remote.parent().unwrap()).unwrap().count(),
        1
    );

    let back = env.path("back.bin");
    claw(
        &env,
        &[
            "ssh",
            "download",
            "box",
            remote.to_str().unwrap(),
            back.to_str().unwrap(),
        ],
    )
    .expect_code(0);
    assert_eq!(std::fs::read(&back).unwrap(), data);

    let r = claw(
        &env,
        &[
            "ssh",
            "download",
            "box",
            "/nonexistent/file",
            back.to_str().unwrap(),
        ],
    );
    r.expect_code(1);
    assert!(r.stderr.contains("cannot open /nonexistent/file"), "{r:?}");
    assert_eq!(
        std::fs::read(&back).unwrap(),
        data,
        "a failed download leaves the old file"
    );
    let audit = read(&env.home.join("audit.log"));
    assert_eq!(audit.matches("\"ssh.transfer\"").count(), 3, "{audit}");
}

#[test]
fn ssh_step_uploads_runs_and_downloads() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    let closed = free_port();
    fleet(
        &env,
        &[
            ("box", sshd.port, &sshd.client_key(), "lab"),
            ("down", closed, &sshd.client_key(), "lab"),
        ],
    );
    trust(&env, "box", &sshd.fingerprint());
    std::fs::write(env.path("app.conf"), "setting=1\n").unwrap();
    let remote_dir = env.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    env.workflow(
        "files",
        &format!(
            "steps:\n  - name: deploy\n    type: ssh\n    hosts: lab\n    min_success: 1\n    upload: {{src: {src}, dest: {dir}/app.conf, mode: \"600\"}}\n    command: cat {dir}/app.conf > {dir}/seen.txt; echo seen\n    download: {{src: {dir}/seen.txt, dest: {out}}}\n",
            src = env.path("app.conf").display(),
            dir = remote_dir.display(),
            out = env.path("collected").display()
        ),
    );
    let (r, run) = run_workflow(&env, "files", &[]);
    r.expect_code(0);
    let o = &step(&run, "deploy")["outputs"];
    assert_eq!(o["ok_hosts"], serde_json::json!(["box"]), "{o:#}");
    assert!(
        o["hosts"]["down"]["error"]
            .as_str()
            .unwrap()
            .contains("upload of"),
        "{o:#}"
    );
    assert_eq!(read(&env.path("collected/box/seen.txt")), "setting=1\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(remote_dir.join("app.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
}

#[test]
fn idle_connections_are_closed_by_the_sweep() {
    if !have_sshd() {
        return;
    }
    use claw::ssh::{Command as SshCommand, Pool, Registry, Settings};
    let env = Env::new();
    let sshd = Sshd::start(&env.path("sshd"), 0);
    fleet(&env, &[("box", sshd.port, &sshd.client_key(), "lab")]);
    trust(&env, "box", &sshd.fingerprint());
    let reg = Registry::find(&env.root, &env.home).unwrap();
    let host = reg.get("box").unwrap().clone();
    let mut settings = Settings::from_env(&env.home, "test");
    settings.user_ssh_dir = None;
    let pool = Pool::new(settings);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    rt.block_on(async {
        let cmd = SshCommand {
            command: "true".into(),
            env: Vec::new(),
            timeout: Duration::from_secs(10),
            sudo: false,
        };
        assert!(pool.run(&host, &cmd, &cancel, &mut |_, _| {}).await.ok());
        assert_eq!(pool.open_connections().await, 1);
        assert_eq!(pool.close_idle(Duration::from_secs(60)).await, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.close_idle(Duration::from_millis(200)).await, 1);
        assert_eq!(pool.open_connections().await, 0);
        // The session is gone on the host too.
        let listener = sshd.child.id();
        let mut gone = false;
        for _ in 0..100 {
            if children(listener).is_empty() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            gone,
            "sshd still has a session process after the idle sweep"
        );
        // The next command opens a new one.
        assert!(pool.run(&host, &cmd, &cancel, &mut |_, _| {}).await.ok());
        assert_eq!(pool.opened(), 2);
        pool.close_all().await;
        assert_eq!(pool.open_connections().await, 0);
    });
}

/// `ssh-keygen` with a passphrase (`""`: none) and a key type (`-b` bits for RSA).
fn keygen_with(path: &Path, kind: &str, passphrase: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-t", kind, "-N", passphrase, "-C", "claw-test"]);
    if kind == "rsa" {
        c.args(["-b", "3072"]);
    }
    assert!(c.arg("-f").arg(path).status().unwrap().success());
}

fn authorize(sshd: &Sshd, pubkey: &Path) {
    let mut keys = read(&sshd.dir.join("authorized_keys"));
    keys.push_str(&read(pubkey));
    std::fs::write(sshd.dir.join("authorized_keys"), keys).unwrap();
}

#[test]
fn rsa_and_ecdsa_keys_rsa_host_keys_and_an_ed25519_pin_against_an_rsa_only_host() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let dir = env.path("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    // The host offers only an RSA key; the client keys are RSA, ECDSA and a passphrase-protected
    // RSA key (its passphrase in the vault).
    keygen_with(&dir.join("hostkey"), "rsa", "");
    keygen_with(&dir.join("client"), "rsa", "");
    let sshd = Sshd::start(&dir, 0);
    let ecdsa = env.path("keys/ecdsa");
    let locked = env.path("keys/locked_rsa");
    std::fs::create_dir_all(env.path("keys")).unwrap();
    keygen_with(&ecdsa, "ecdsa", "");
    let pass = "rsa passphrase with spaces";
    keygen_with(&locked, "rsa", pass);
    authorize(&sshd, &ecdsa.with_extension("pub"));
    authorize(&sshd, &locked.with_extension("pub"));
    fleet(
        &env,
        &[
            ("rsa", sshd.port, &sshd.client_key(), "lab"),
            ("ec", sshd.port, &ecdsa, "lab"),
            ("locked", sshd.port, &locked, "lab"),
        ],
    );

    // The RSA host key is shown (with the fingerprint ssh-keygen prints) and pinned as RSA.
    let r = claw(&env, &["ssh", "run", "rsa", "true"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains("ssh-rsa") && r.stdout.contains(&sshd.fingerprint()),
        "{r:?}"
    );
    trust(&env, "rsa", &sshd.fingerprint());
    let pins = read(&env.home.join("known_hosts"));
    assert!(
        pins.starts_with(&format!("[127.0.0.1]:{} ssh-rsa ", sshd.port)),
        "{pins}"
    );

    claw(&env, &["vault", "init"]).expect_code(0);
    claw(&env, &["vault", "set", "ssh:locked:passphrase", pass]).expect_code(0);
    let r = claw(
        &env,
        &["ssh", "run", "lab", "--json", "--", "echo", "via-$0"],
    );
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for i in 0..3 {
        assert_eq!(v[i]["ok"], true, "{v}");
        assert!(v[i]["stdout"].as_str().unwrap().starts_with("via-"), "{v}");
    }
    // sshd saw SHA-2 signatures (RSA with SHA-1 is refused by OpenSSH 8.8+ by default: the
    // login above could not have worked with it).
    assert!(!read(&env.home.join("audit.log")).contains(pass));

    // An ed25519 key pinned for the address while the server offers only RSA: refused.
    let other = env.path("keys/other_host");
    keygen_with(&other, "ed25519", "");
    let pubkey = read(&other.with_extension("pub"));
    let mut words = pubkey.split_whitespace();
    let (kt, b64) = (words.next().unwrap(), words.next().unwrap());
    std::fs::write(
        env.home.join("known_hosts"),
        format!("[127.0.0.1]:{} {kt} {b64}\n", sshd.port),
    )
    .unwrap();
    let r = claw(&env, &["ssh", "run", "rsa", "touch", "/tmp/must-not-run"]);
    r.expect_code(1);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{r:?}");
    assert!(
        r.stdout.contains("ssh-rsa")
            && r.stdout
                .contains(&fingerprint(&other.with_extension("pub"))),
        "{r:?}"
    );
}

/// The account the password and sudo tests log in as: `clawssh`, with `password`, allowed
/// every command through sudo with its password (a sudoers rule). Made once per machine by the
/// tests (they run as root, as the loopback sshd needs); the password is set again each time.
fn test_account(password: &str) -> &'static str {
    static MADE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let user = "clawssh";
    let mut made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*made {
        assert!(
            Path::new("/usr/bin/sudo").is_file(),
            "sudo is missing: scripts/test.sh installs it"
        );
        let exists = Command::new("id")
            .arg(user)
            .output()
            .unwrap()
            .status
            .success();
        if !exists {
            let ok = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", user])
                .status()
                .unwrap();
            assert!(
                ok.success(),
                "useradd {user} failed (the tests run as root)"
            );
        }
        std::fs::write(
            "/etc/sudoers.d/claw-ssh-test",
            format!("{user} ALL=(ALL:ALL) ALL\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            "/etc/sudoers.d/claw-ssh-test",
            std::fs::Permissions::from_mode(0o440),
        )
        .unwrap();
        *made = true;
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{password}\n").as_bytes())
        .unwrap();
    assert!(chpasswd.wait().unwrap().success());
    user
}

const ACCOUNT_PASSWORD: &str = "Claw-ssh test pw 7";

#[test]
fn password_auth_from_the_vault_and_sudo_with_it() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let user = test_account(ACCOUNT_PASSWORD);
    let sshd = Sshd::start_with(&env.path("sshd"), 0, true);
    std::fs::write(
        env.root.join("hosts.yaml"),
        format!(
            "hosts:\n  - {{alias: pw, hostname: 127.0.0.1, port: {p}, username: {user}, auth: password}}\n  \
             - {{alias: keyed, hostname: 127.0.0.1, port: {p}, username: {user}, key_file: {k}}}\n",
            p = sshd.port,
            k = sshd.client_key().display()
        ),
    )
    .unwrap();
    trust(&env, "pw", &sshd.fingerprint());

    // No password in the vault: a clear error naming the key.
    let r = claw(&env, &["ssh", "run", "pw", "true"]);
    r.expect_code(1);
    assert!(r.stdout.contains("ssh:pw:password"), "{r:?}");

    claw(&env, &["vault", "init"]).expect_code(0);
    claw(
        &env,
        &["vault", "set", "ssh:pw:password", "not the password"],
    )
    .expect_code(0);
    let r = claw(&env, &["ssh", "run", "pw", "true"]);
    r.expect_code(1);
    assert!(r.stdout.contains("refused the password"), "{r:?}");

    claw(&env, &["vault", "set", "ssh:pw:password", ACCOUNT_PASSWORD]).expect_code(0);
    let r = claw(&env, &["ssh", "run", "pw", "--", "id", "-un"]);
    r.expect_code(0);
    assert!(r.stdout.contains(user), "{r:?}");

    // sudo with the same password (no ssh:pw:sudo_password): root, and the password is not on
    // the command's stdin (`cat` reads it to the end).
    let r = claw(
        &env,
        &["ssh", "run", "pw", "--sudo", "--", "id -u; cat; echo end"],
    );
    r.expect_code(0);
    assert!(r.stdout.contains("\n0\nend\n"), "{r:?}");
    assert!(!r.stdout.contains(ACCOUNT_PASSWORD) && !r.stderr.contains(ACCOUNT_PASSWORD));

    // Key login, no password anywhere: sudo says what to set instead of hanging.
    let r = claw(&env, &["ssh", "run", "keyed", "--sudo", "--", "id", "-u"]);
    r.expect_code(1);
    assert!(r.stdout.contains("ssh:keyed:sudo_password"), "{r:?}");
    claw(
        &env,
        &["vault", "set", "ssh:keyed:sudo_password", ACCOUNT_PASSWORD],
    )
    .expect_code(0);
    let r = claw(&env, &["ssh", "run", "keyed", "--sudo", "--", "id", "-u"]);
    r.expect_code(0);
    assert!(r.stdout.contains("\n0\n"), "{r:?}");

    // The step: `sudo: true` with env; a timed-out sudo command leaves nothing on the host.
    let marker = format!("{}", 100_000 + std::process::id() % 800_000);
    env.workflow(
        "root",
        &format!(
            "name: root\nsteps:\n  - name: who\n    type: ssh\n    hosts: pw\n    sudo: true\n    \
             env: {{MODE: fast}}\n    command: echo \"$MODE $(id -u)\"\n  \
             - name: stuck\n    type: ssh\n    hosts: keyed\n    sudo: true\n    timeout: 2s\n    \
             needs: [who]\n    command: sleep {marker}3 & sleep {marker}4; echo never\n"
        ),
    );
    let (r, v) = run_workflow(&env, "root", &[]);
    assert_eq!(
        step(&v, "who")["outputs"]["hosts"]["pw"]["stdout"],
        "fast 0\n",
        "{r:?}"
    );
    assert_eq!(step(&v, "stuck")["status"], "failed", "{r:?}");
    assert!(
        none_running(&format!("sleep {marker}"), Duration::from_secs(8)),
        "a root process of the sudo command is still running"
    );
    assert!(!read(&env.home.join("audit.log")).contains(ACCOUNT_PASSWORD));
    let logs = Command::new("grep")
        .args(["-rl", ACCOUNT_PASSWORD])
        .arg(&env.home)
        .output()
        .unwrap();
    assert!(
        logs.stdout.is_empty(),
        "the password is in {}",
        String::from_utf8_lossy(&logs.stdout)
    );
}

/// claw killed (-9) during an ssh step on two hosts, one finished (exit 3) and one still
/// running: the resumed run waits for a decision that names the finished host with its exit
/// code and the one that had not finished.
#[test]
fn crash_during_an_ssh_step_names_the_finished_hosts() {
    if !have_sshd() {
        return;
    }
    let env = Env::new();
    let quick = Sshd::start(&env.path("quick"), 0);
    let slow = Sshd::start(&env.path("slow"), 0);
    fleet(
        &env,
        &[
            ("quick", quick.port, &quick.client_key(), "pair"),
            ("slow", slow.port, &slow.client_key(), "pair"),
        ],
    );
    trust(&env, "quick", &quick.fingerprint());
    trust(&env, "slow", &slow.fingerprint());
    // SSH_CONNECTION ends with the server's port: the slow host's command sleeps.
    env.workflow(
        "pair",
        &format!(
            "steps:\n  - name: deploy\n    type: ssh\n    hosts: pair\n    command: 'case \"$SSH_CONNECTION\" in *\" {}\") sleep 20;; *) exit 3;; esac'\n",
            slow.port
        ),
    );
    let mut child = env
        .command(&["workflow", "run", "pair", "--quiet"])
        .env("HOME", env.path("userhome"))
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the quick host's end is in the step's journal, then kill claw.
    let journal = wait_for(Duration::from_secs(30), || {
        let found = walk(&env.home)
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(".hosts.jsonl"))?;
        read(&found).contains("\"host\":\"quick\"").then_some(found)
    });
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    assert!(journal.is_some(), "the quick host's end was not journaled");
    let runs = claw(&env, &["run", "list", "--json", "--limit", "1"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let run = runs[0]["id"].as_str().unwrap().to_owned();
    // The resumed run waits for the decision: read it, then reject the step.
    let mut resumer = env.spawn(&["run", "resume", &run, "--quiet"]);
    let msg = wait_for(Duration::from_secs(30), || {
        let shown = env.show(&run);
        let step = &shown["steps"][0];
        (step["status"] == "interrupted")
            .then(|| step["message"].as_str().unwrap_or_default().to_owned())
    });
    env.claw(&["run", "reject", &run, "deploy", "--no-wait"]);
    let _ = resumer.wait();
    let msg = msg.unwrap_or_default();
    assert!(
        msg.contains("hosts finished: quick (exit 3); not finished: slow"),
        "{msg}\n{}",
        journal.as_deref().map(read).unwrap_or_default()
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
