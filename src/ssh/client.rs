//! Connections: russh clients with strict host-key checks, authenticated by key file, vault
//! password or agent, kept in a per-process [`Pool`] (one connection per host, several
//! commands on it as separate channels), and running one command with a timeout that stops it
//! on the host.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect, Sig};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::hosts::{Auth, Host};
use super::known_hosts::{self, Verdict};
use crate::audit::{Action, AuditLog, Event};
use crate::secret::Secret;

/// How long a connection may take to be established (TCP, key exchange, authentication).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection unused for this long is closed and opened again on next use.
pub const IDLE: Duration = Duration::from_secs(300);
/// Channels open at once on one connection (OpenSSH's `MaxSessions` is 10 by default).
pub const CHANNELS_PER_CONNECTION: usize = 8;
/// Keepalives: one every 15 s (`CLAW_SSH_KEEPALIVE`); three unanswered end the connection.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;
/// The most of each stream kept in a result (the rest is read and counted, not kept).
pub const MAX_CAPTURE: usize = 1 << 20;
/// What the wrapper prints first so that a stopped command's process group can be killed.
const PGID_PREFIX: &str = "__claw_pgid=";

/// Where host keys are checked and pinned, and what a connection needs from the machine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data directory (its `known_hosts` is read first and is where pins go; the vault).
    pub home: PathBuf,
    /// The user's `~/.ssh` (its `known_hosts`, and default keys `id_ed25519`, `id_ecdsa`, `id_rsa`).
    pub user_ssh_dir: Option<PathBuf>,
    /// The seed's `SSH_AUTO_ADD_HOST_KEYS`: pin an unknown key on first use (audited).
    pub auto_add: bool,
    /// `SSH_AUTH_SOCK`, for `auth: agent`.
    pub agent_socket: Option<PathBuf>,
    /// Who the audit entries name.
    pub actor: String,
    /// How often an idle connection is probed (three unanswered probes end it).
    pub keepalive: Duration,
}

impl Settings {
    /// From the process environment and the data directory.
    pub fn from_env(home: &std::path::Path, actor: &str) -> Self {
        let env = |k: &str| crate::config::env::var(k).filter(|v| !v.is_empty());
        Self {
            home: home.to_path_buf(),
            user_ssh_dir: env("HOME").map(|h| PathBuf::from(h).join(".ssh")),
            auto_add: env("SSH_AUTO_ADD_HOST_KEYS")
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes")),
            agent_socket: env("SSH_AUTH_SOCK").map(PathBuf::from),
            actor: actor.to_owned(),
            keepalive: env("CLAW_SSH_KEEPALIVE")
                .and_then(|v| crate::time::duration::parse(&v).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(KEEPALIVE),
        }
    }

    /// The data directory's `known_hosts` (where `trust` pins keys).
    pub fn pin_file(&self) -> PathBuf {
        self.home.join("known_hosts")
    }

    /// The files checked, in order.
    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.pin_file()];
        if let Some(d) = &self.user_ssh_dir {
            v.push(d.join("known_hosts"));
        }
        v
    }

    fn audit(&self) -> AuditLog {
        AuditLog::in_dir(&self.home)
    }
}

/// Why a host gave no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    HostKey(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Channel(String),
}

/// The key a server presented, and what the files said about it.
#[derive(Debug, Clone)]
pub struct Presented {
    pub keytype: String,
    pub blob: Vec<u8>,
    pub fingerprint: String,
    pub verdict: Verdict,
}

/// The handler russh calls: decides the server's key.
#[derive(Debug)]
struct Checker {
    host: Host,
    settings: Settings,
    /// Only record the key (for `trust`), accept nothing.
    probe_only: bool,
    seen: Arc<StdMutex<Option<Presented>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        let blob = key.to_bytes().unwrap_or_default();
        let keytype = key.algorithm().as_str().to_owned();
        let verdict = known_hosts::check(
            &self.settings.known_hosts_files(),
            &self.host.hostname,
            self.host.port,
            &blob,
        );
        let fingerprint = known_hosts::fingerprint(&blob);
        let mut accept = matches!(verdict, Verdict::Known { .. });
        if !self.probe_only && verdict == Verdict::Unknown && self.settings.auto_add {
            let pinned = known_hosts::pin(
                &self.settings.pin_file(),
                &self.host.hostname,
                self.host.port,
                &keytype,
                &blob,
                &format!("claw:{}", self.host.alias),
            );
            let outcome = if pinned.is_ok() { "ok" } else { "failed" };
            let _ = self.settings.audit().record(&Event::new(
                &self.settings.actor,
                Action::SshTrust,
                &self.host.alias,
                outcome,
                serde_json::json!({"fingerprint": fingerprint, "keytype": keytype, "how": "SSH_AUTO_ADD_HOST_KEYS"}),
            ));
            accept = pinned.is_ok();
        }
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(Presented {
                keytype,
                blob,
                fingerprint,
                verdict,
            });
        }
        Ok(accept && !self.probe_only)
    }
}

fn config(settings: &Settings) -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(settings.keepalive),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    })
}

/// Why the host key was refused, as a message (and its audit entry).
fn refusal(host: &Host, p: &Presented, settings: &Settings) -> String {
    let msg = match &p.verdict {
        Verdict::Unknown => format!(
            "host key of {} ({}) is not known: {} {}; if that is the host's key, pin it with `claw ssh trust {} --fingerprint {}`",
            host.alias,
            known_hosts::host_name(&host.hostname, host.port),
            p.keytype,
            p.fingerprint,
            host.alias,
            p.fingerprint
        ),
        Verdict::Changed {
            file,
            line,
            expected,
        } => format!(
            "HOST KEY CHANGED for {} ({}): it offered {} {}, but {}:{line} pins {}. Someone may be intercepting the connection (or the host was reinstalled): refusing to connect. If the change is expected, remove the old line and run `claw ssh trust {}`",
            host.alias,
            known_hosts::host_name(&host.hostname, host.port),
            p.keytype,
            p.fingerprint,
            file.display(),
            expected.join(", "),
            host.alias
        ),
        Verdict::Revoked { file, line } => format!(
            "host key of {} ({}) {} is REVOKED ({}:{line}): refusing to connect",
            host.alias,
            known_hosts::host_name(&host.hostname, host.port),
            p.fingerprint,
            file.display()
        ),
        Verdict::CertAuthorityOnly { file, line } => format!(
            "host key of {} ({}) cannot be verified: {}:{line} trusts a certificate authority (@cert-authority) for it, \
             but claw does not verify host certificates (its SSH library, russh 0.59, does not negotiate them), \
             and no plain key is pinned for the host. It offered {} {}; if that is the host's key, pin it with \
             `claw ssh trust {} --fingerprint {}`",
            host.alias,
            known_hosts::host_name(&host.hostname, host.port),
            file.display(),
            p.keytype,
            p.fingerprint,
            host.alias,
            p.fingerprint
        ),
        Verdict::Known { .. } => format!("host key of {} was accepted", host.alias),
    };
    let kind = match p.verdict {
        Verdict::Unknown => "unknown",
        Verdict::Changed { .. } => "changed",
        Verdict::Revoked { .. } => "revoked",
        Verdict::CertAuthorityOnly { .. } => "certificate_not_supported",
        Verdict::Known { .. } => "known",
    };
    let _ = settings.audit().record(&Event::new(
        &settings.actor,
        Action::SshHostKeyRefused,
        &host.alias,
        "refused",
        serde_json::json!({"fingerprint": p.fingerprint, "keytype": p.keytype, "reason": kind}),
    ));
    msg
}

/// Opens the TCP connection and runs the key exchange (host key checked); `None` for the
/// presented key when the exchange did not get that far.
async fn handshake(
    host: &Host,
    settings: &Settings,
    probe_only: bool,
) -> (Result<Handle<Checker>, SshError>, Option<Presented>) {
    let seen = Arc::new(StdMutex::new(None));
    let checker = Checker {
        host: host.clone(),
        settings: settings.clone(),
        probe_only,
        seen: seen.clone(),
    };
    let addr = (host.hostname.clone(), host.port);
    let attempt = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client::connect(config(settings), addr, checker),
    )
    .await;
    let presented = seen.lock().ok().and_then(|s| s.clone());
    let result = match attempt {
        Err(_) => Err(SshError::Connect(format!(
            "cannot connect to {} ({}): no answer within {} s",
            host.alias,
            host.address(),
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => match &presented {
            Some(p) if !matches!(p.verdict, Verdict::Known { .. }) || probe_only => {
                if probe_only {
                    Err(SshError::HostKey(String::new()))
                } else {
                    Err(SshError::HostKey(refusal(host, p, settings)))
                }
            }
            _ => Err(SshError::Connect(format!(
                "cannot connect to {} ({}): {e}",
                host.alias,
                host.address()
            ))),
        },
    };
    (result, presented)
}

/// The key `host` presents, without authenticating (for `claw ssh trust`).
pub async fn probe_key(host: &Host, settings: &Settings) -> Result<Presented, SshError> {
    let (result, presented) = handshake(host, settings, true).await;
    match (result, presented) {
        (_, Some(p)) => Ok(p),
        (Err(e), None) => Err(e),
        (Ok(_), None) => Err(SshError::Connect("the server presented no key".into())),
    }
}

fn vault_secret(settings: &Settings, key: &str) -> Result<Option<Secret>, String> {
    let vault = crate::vault::Vault::new(&settings.home).acting_as(&settings.actor);
    match vault.get(key) {
        Ok(Some(s)) => {
            crate::redact::register_global([s.expose()]);
            Ok(Some(s))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(format!("cannot read `{key}` from the vault: {e}")),
    }
}

fn expand_home(path: &str, settings: &Settings) -> PathBuf {
    match (path.strip_prefix("~/"), &settings.user_ssh_dir) {
        (Some(rest), Some(ssh)) => ssh
            .parent()
            .map_or_else(|| PathBuf::from(path), |h| h.join(rest)),
        _ => PathBuf::from(path),
    }
}

/// Private keys read from their files, kept for the pool's life: a fleet sharing one key file
/// decodes it once (a passphrase-protected key costs a bcrypt-pbkdf run per decoding, and it
/// would run on the runtime's thread once per host), and the vault is read once for it. A file
/// changed since (size or modification time) is read again.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: StdMutex<HashMap<PathBuf, (FileStamp, Arc<PrivateKey>)>>,
}

/// A file's modification time and size, to see that it changed.
type FileStamp = (Option<std::time::SystemTime>, u64);

impl KeyCache {
    /// The key in `file`; `passphrase` is asked only when the file is not cached. An error
    /// carries whether a passphrase was found.
    fn load(
        &self,
        file: &std::path::Path,
        passphrase: impl FnOnce() -> Option<Secret>,
    ) -> Result<Arc<PrivateKey>, (russh::keys::Error, bool)> {
        let meta = std::fs::metadata(file).ok();
        let stamp = (
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.as_ref().map_or(0, std::fs::Metadata::len),
        );
        if let Ok(keys) = self.keys.lock()
            && let Some((seen, key)) = keys.get(file)
            && *seen == stamp
        {
            return Ok(key.clone());
        }
        let passphrase = passphrase();
        let key = russh::keys::load_secret_key(file, passphrase.as_ref().map(Secret::expose))
            .map(Arc::new)
            .map_err(|e| (e, passphrase.is_some()))?;
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(file.to_path_buf(), (stamp, key.clone()));
        }
        Ok(key)
    }
}

async fn authenticate(
    handle: &mut Handle<Checker>,
    host: &Host,
    settings: &Settings,
    keys: &KeyCache,
) -> Result<(), SshError> {
    let who = format!("{} ({})", host.alias, host.address());
    let denied = |how: &str| {
        SshError::Auth(format!(
            "authentication to {who} failed: the server refused {how}"
        ))
    };
    let io = |e: russh::Error| SshError::Auth(format!("authentication to {who} failed: {e}"));
    match host.auth {
        Auth::Password => {
            let key = format!("ssh:{}:password", host.alias);
            let Some(password) = vault_secret(settings, &key).map_err(SshError::Auth)? else {
                return Err(SshError::Auth(format!(
                    "{} uses password authentication, but the vault has no `{key}` (claw vault set {key})",
                    host.alias
                )));
            };
            let r = handle
                .authenticate_password(&host.username, password.expose())
                .await
                .map_err(io)?;
            if !matches!(r, AuthResult::Success) {
                return Err(denied("the password"));
            }
        }
        Auth::Key => {
            let files: Vec<PathBuf> = match &host.key_file {
                Some(f) => vec![expand_home(f, settings)],
                None => settings
                    .user_ssh_dir
                    .iter()
                    .flat_map(|d| ["id_ed25519", "id_ecdsa", "id_rsa"].map(|n| d.join(n)))
                    .filter(|p| p.is_file())
                    .collect(),
            };
            if files.is_empty() {
                return Err(SshError::Auth(format!(
                    "{} uses key authentication but has no `key_file` and ~/.ssh has no id_ed25519, id_ecdsa or id_rsa",
                    host.alias
                )));
            }
            let pass_key = format!("ssh:{}:passphrase", host.alias);
            for file in &files {
                let key = keys.load(file, || vault_secret(settings, &pass_key).ok().flatten())
                    .map_err(|(e, passphrase)| {
                        SshError::Auth(format!(
                            "cannot load the key {} for {}: {e}{}",
                            file.display(),
                            host.alias,
                            if !passphrase {
                                format!(" (a passphrase-protected key reads its passphrase from the vault's `{pass_key}`)")
                            } else {
                                String::new()
                            }
                        ))
                    })?;
                let hash = if key.algorithm().is_rsa() {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(io)?
                        .flatten()
                        .or(Some(HashAlg::Sha256))
                } else {
                    None
                };
                let r = handle
                    .authenticate_publickey(&host.username, PrivateKeyWithHashAlg::new(key, hash))
                    .await
                    .map_err(io)?;
                if matches!(r, AuthResult::Success) {
                    return Ok(());
                }
            }
            return Err(denied(&format!(
                "the key{} {}",
                if files.len() > 1 { "s" } else { "" },
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Auth::Agent => {
            let Some(sock) = &settings.agent_socket else {
                return Err(SshError::Auth(format!(
                    "{} uses agent authentication, but SSH_AUTH_SOCK is not set",
                    host.alias
                )));
            };
            let mut agent = russh::keys::agent::client::AgentClient::connect_uds(sock)
                .await
                .map_err(|e| {
                    SshError::Auth(format!(
                        "cannot reach the SSH agent at {}: {e}",
                        sock.display()
                    ))
                })?;
            let ids = agent
                .request_identities()
                .await
                .map_err(|e| SshError::Auth(format!("the SSH agent did not list its keys: {e}")))?;
            for id in ids {
                let key = id.public_key().into_owned();
                let hash = if key.algorithm().is_rsa() {
                    Some(HashAlg::Sha256)
                } else {
                    None
                };
                let r = handle
                    .authenticate_publickey_with(&host.username, key, hash, &mut agent)
                    .await;
                if matches!(r, Ok(AuthResult::Success)) {
                    return Ok(());
                }
            }
            return Err(denied("every key of the agent"));
        }
    }
    Ok(())
}

/// One pooled connection.
struct Conn {
    handle: Handle<Checker>,
    slots: Semaphore,
    last_used: StdMutex<Instant>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

/// One host's place in the pool: its connection while there is one.
type Slot = Arc<Mutex<Option<Arc<Conn>>>>;

/// Connections per host alias, reused across commands in this process.
#[derive(Debug)]
pub struct Pool {
    settings: Settings,
    conns: Mutex<HashMap<String, Slot>>,
    keys: KeyCache,
    /// Connections opened (for tests and benchmarks: reuse shows as few opens).
    opened: std::sync::atomic::AtomicUsize,
}

/// What one command did on one host.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes read past [`MAX_CAPTURE`] and not kept.
    pub dropped: u64,
    /// Why the host gave no (or no complete) result: unreachable, key, auth, timeout, signal.
    pub error: Option<String>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
}

impl Output {
    /// Exit status 0 and no error (the seed's `ok`).
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && self.error.is_none()
    }
}

/// How one command is run.
#[derive(Debug, Clone)]
pub struct Command {
    /// The command line, run by the remote user's shell.
    pub command: String,
    /// Exported before it runs (values single-quoted).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Run it as root through `sudo` on the host; the password (if the host's sudo asks for
    /// one) is the vault's `ssh:<alias>:sudo_password`, else `ssh:<alias>:password`, sent on
    /// the command's stdin (never on a command line, never logged). Without either, `sudo -n`.
    pub sudo: bool,
}

/// A value single-quoted for a POSIX shell.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

impl Pool {
    pub fn new(settings: Settings) -> Self {
        // The audit log and the pins live there; a failure shows when either is written.
        let _ = crate::fsutil::create_dirs_private(&settings.home);
        Self {
            settings,
            conns: Mutex::new(HashMap::new()),
            keys: KeyCache::default(),
            opened: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How many connections this pool has opened.
    pub fn opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A live connection to `host`: the pooled one, or a new one (a closed or idle one is
    /// replaced).
    async fn conn(&self, host: &Host) -> Result<Arc<Conn>, SshError> {
        let slot = {
            let mut map = self.conns.lock().await;
            map.entry(host.alias.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            let idle = c.last_used.lock().map(|t| t.elapsed()).unwrap_or_default();
            if !c.handle.is_closed() && idle < IDLE {
                return Ok(c.clone());
            }
            let _ = c
                .handle
                .disconnect(Disconnect::ByApplication, "idle", "en")
                .await;
            *slot = None;
        }
        let (handshake, _) = handshake(host, &self.settings, false).await;
        let mut handle = handshake?;
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            authenticate(&mut handle, host, &self.settings, &self.keys),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(SshError::Auth(format!(
                    "authentication to {} did not finish within {} s",
                    host.alias,
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        }
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conn = Arc::new(Conn {
            handle,
            slots: Semaphore::new(CHANNELS_PER_CONNECTION),
            last_used: StdMutex::new(Instant::now()),
        });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A new session channel on the host's pooled connection (for SFTP).
    pub async fn open_channel(
        &self,
        host: &Host,
    ) -> Result<russh::Channel<russh::client::Msg>, SshError> {
        let conn = self.conn(host).await?;
        if let Ok(mut t) = conn.last_used.lock() {
            *t = Instant::now();
        }
        conn.handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Channel(format!("cannot open a channel on {}: {e}", host.alias)))
    }

    /// Connects (or reuses the connection) without running anything: `claw ssh test`.
    pub async fn check(&self, host: &Host) -> Result<(), SshError> {
        self.conn(host).await.map(|_| ())
    }

    /// Closes the connections unused for `idle` or already dead; returns how many it closed.
    /// The daemon calls it every minute with [`IDLE`].
    pub async fn close_idle(&self, idle: Duration) -> usize {
        let slots: Vec<Slot> = self.conns.lock().await.values().cloned().collect();
        let mut closed = 0;
        for slot in slots {
            let mut slot = slot.lock().await;
            let stale = slot.as_ref().is_some_and(|c| {
                c.handle.is_closed()
                    || c.last_used
                        .lock()
                        .map(|t| t.elapsed() >= idle)
                        .unwrap_or(true)
            });
            if stale && let Some(c) = slot.take() {
                let _ = c
                    .handle
                    .disconnect(Disconnect::ByApplication, "idle", "en")
                    .await;
                closed += 1;
            }
        }
        closed
    }

    /// How many connections are open now.
    pub async fn open_connections(&self) -> usize {
        let slots: Vec<Slot> = self.conns.lock().await.values().cloned().collect();
        let mut n = 0;
        for slot in slots {
            if slot
                .lock()
                .await
                .as_ref()
                .is_some_and(|c| !c.handle.is_closed())
            {
                n += 1;
            }
        }
        n
    }

    /// Closes every connection.
    pub async fn close_all(&self) {
        let map = std::mem::take(&mut *self.conns.lock().await);
        for slot in map.into_values() {
            if let Some(c) = slot.lock().await.take() {
                let _ = c
                    .handle
                    .disconnect(Disconnect::ByApplication, "bye", "en")
                    .await;
            }
        }
    }

    /// Runs `cmd` on `host`; the result says how it went (never an `Err`: a host's failure is
    /// its result). `on_data(is_stderr, bytes)` sees the output as it arrives. On timeout or
    /// cancel the command's whole process group on the host is stopped (TERM, then KILL) and
    /// its channel closed.
    pub async fn run(
        &self,
        host: &Host,
        cmd: &Command,
        cancel: &CancellationToken,
        on_data: &mut (dyn FnMut(bool, &[u8]) + Send),
    ) -> Output {
        let started = Instant::now();
        let mut out = Output::default();
        let deadline = tokio::time::Instant::now() + cmd.timeout;
        let conn = tokio::select! {
            c = self.conn(host) => c,
            () = tokio::time::sleep_until(deadline) => Err(SshError::Connect(format!("no connection to {} within the timeout", host.alias))),
            () = cancel.cancelled() => Err(SshError::Connect("cancelled".into())),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                out.cancelled = cancel.is_cancelled();
                out.error = Some(e.to_string());
                out.duration = started.elapsed();
                return out;
            }
        };
        let result = self
            .exec(&conn, host, cmd, deadline, cancel, &mut out, on_data)
            .await;
        if let Ok(mut t) = conn.last_used.lock() {
            *t = Instant::now();
        }
        if let Err(e) = result {
            out.error = Some(e);
        }
        out.duration = started.elapsed();
        out
    }

    #[allow(clippy::too_many_arguments)]
    async fn exec(
        &self,
        conn: &Conn,
        host: &Host,
        cmd: &Command,
        deadline: tokio::time::Instant,
        cancel: &CancellationToken,
        out: &mut Output,
        on_data: &mut (dyn FnMut(bool, &[u8]) + Send),
    ) -> Result<(), String> {
        let _permit = conn.slots.acquire().await.map_err(|e| e.to_string())?;
        let mut channel = conn
            .handle
            .channel_open_session()
            .await
            .map_err(|e| format!("cannot open a session on {}: {e}", host.alias))?;
        // The environment goes through stdin, never the command line (which the host's `ps`
        // shows): the wrapper reads exactly its bytes and evaluates the exports.
        let mut exports = String::new();
        for (k, v) in &cmd.env {
            if is_name(k) {
                exports.push_str(&format!("export {k}={}\n", quote(v)));
            }
        }
        let sudo_password = if cmd.sudo {
            sudo_password(&self.settings, host)?
        } else {
            None
        };
        let (line, stdin) = wrap(cmd, &exports, sudo_password.as_ref());
        channel
            .exec(true, line.into_bytes())
            .await
            .map_err(|e| format!("cannot start the command on {}: {e}", host.alias))?;
        if !stdin.is_empty() {
            channel
                .data(stdin.as_slice())
                .await
                .map_err(|e| format!("cannot send the environment to {}: {e}", host.alias))?;
        }
        let _ = channel.eof().await;
        let mut pgid: Option<u32> = None;
        let mut head = Vec::new();
        let mut stop = None;
        loop {
            let msg = tokio::select! {
                m = channel.wait() => m,
                () = tokio::time::sleep_until(deadline), if stop.is_none() => { stop = Some(true); None }
                () = cancel.cancelled(), if stop.is_none() => { stop = Some(false); None }
            };
            if let Some(timed_out) = stop.filter(|_| !out.timed_out && !out.cancelled) {
                if timed_out {
                    out.timed_out = true;
                } else {
                    out.cancelled = true;
                }
                let _ = channel.signal(Sig::TERM).await;
                if let Some(p) = pgid {
                    self.kill_group(conn, p, cmd.sudo.then_some(sudo_password.as_ref()))
                        .await;
                }
                let _ = channel.close().await;
                break;
            }
            let Some(msg) = msg else { break };
            match msg {
                ChannelMsg::Data { data } => {
                    if pgid.is_none() {
                        head.extend_from_slice(&data);
                        let Some(nl) = head.iter().position(|b| *b == b'\n') else {
                            continue;
                        };
                        let first = String::from_utf8_lossy(&head[..nl]).into_owned();
                        let found = first
                            .strip_prefix(PGID_PREFIX)
                            .and_then(|p| p.trim().parse().ok());
                        pgid = found.or(Some(0));
                        // Without the line (a shell that did not run the wrapper as written),
                        // every byte is the command's.
                        let rest = if found.is_some() {
                            head.split_off(nl + 1)
                        } else {
                            std::mem::take(&mut head)
                        };
                        head.clear();
                        capture(&mut out.stdout, &mut out.dropped, &rest);
                        on_data(false, &rest);
                        continue;
                    }
                    capture(&mut out.stdout, &mut out.dropped, &data);
                    on_data(false, &data);
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    capture(&mut out.stderr, &mut out.dropped, &data);
                    on_data(true, &data);
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    out.exit_code = Some(i32::try_from(exit_status).unwrap_or(i32::MAX));
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.error = Some(format!(
                        "killed by signal {signal_name:?} on {}",
                        host.alias
                    ));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        if pgid.is_none() && !head.is_empty() {
            capture(&mut out.stdout, &mut out.dropped, &head);
            on_data(false, &head);
        }
        if cmd.sudo
            && out.exit_code == Some(1)
            && String::from_utf8_lossy(&out.stderr).contains("sudo: a password is required")
        {
            out.error = Some(format!(
                "sudo on {} asks for a password and the vault has none: claw vault set ssh:{}:sudo_password",
                host.alias, host.alias
            ));
        }
        if out.timed_out {
            return Err(format!(
                "timed out after {} on {} (the command was stopped there)",
                crate::time::duration::format(cmd.timeout),
                host.alias
            ));
        }
        if out.cancelled {
            return Err(format!(
                "cancelled (the command was stopped on {})",
                host.alias
            ));
        }
        if out.exit_code.is_none() && out.error.is_none() {
            return Err(format!(
                "the connection to {} ended before the command did",
                host.alias
            ));
        }
        Ok(())
    }

    /// Stops a process group on the host through a second channel: TERM, then KILL (as root
    /// through sudo for a command run with `sudo`: `Some(password)`).
    async fn kill_group(&self, conn: &Conn, pgid: u32, sudo: Option<Option<&Secret>>) {
        if pgid <= 1 {
            return;
        }
        let Ok(mut ch) = conn.handle.channel_open_session().await else {
            return;
        };
        let kill = format!(
            "kill -s TERM -- -{pgid} 2>/dev/null; sleep 1; kill -s KILL -- -{pgid} 2>/dev/null; true"
        );
        let (line, stdin) = match sudo {
            None => (kill, Vec::new()),
            Some(None) => (format!("sudo -n -- sh -c {}", quote(&kill)), Vec::new()),
            Some(Some(pw)) => (
                format!("sudo -S -p '' -- sh -c {}", quote(&kill)),
                format!("{}\n", pw.expose()).into_bytes(),
            ),
        };
        if ch.exec(true, line.into_bytes()).await.is_err() {
            return;
        }
        if !stdin.is_empty() {
            let _ = ch.data(stdin.as_slice()).await;
        }
        let _ = ch.eof().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(m) = ch.wait().await {
                if matches!(m, ChannelMsg::Close) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The host's sudo password from the vault: `ssh:<alias>:sudo_password`, else
/// `ssh:<alias>:password`; `None` when neither is set (then `sudo -n`).
fn sudo_password(settings: &Settings, host: &Host) -> Result<Option<Secret>, String> {
    for key in [
        format!("ssh:{}:sudo_password", host.alias),
        format!("ssh:{}:password", host.alias),
    ] {
        if let Some(s) = vault_secret(settings, &key)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// What marks the end of the sudo password on a sudo command's stdin.
const STDIN_MARK: &str = "__claw_stdin__";

/// The command line the host's shell runs, and what goes to its stdin. The first line of
/// output is the process group to stop on timeout (`__claw_pgid=N`); then the exports are read
/// from stdin and evaluated, then the command runs.
///
/// With `sudo`, the whole of it runs in `sh -c` under sudo (so that the exports and the
/// process group are root's), and stdin starts with the password line and a mark: the inner
/// shell reads up to the mark, so the password is never read by the command even when sudo
/// did not ask for it.
fn wrap(cmd: &Command, exports: &str, sudo_password: Option<&Secret>) -> (String, Vec<u8>) {
    let read_env = if exports.is_empty() {
        String::new()
    } else {
        format!(
            "__claw_env=$(head -c {}) && eval \"$__claw_env\"; unset __claw_env; ",
            exports.len()
        )
    };
    if !cmd.sudo {
        let line = format!(
            "printf '{PGID_PREFIX}%s\\n' \"$$\"; {read_env}{}",
            cmd.command
        );
        return (line, exports.as_bytes().to_vec());
    }
    let mut inner = format!(
        "printf '{PGID_PREFIX}%s\\n' \"$(cut -d' ' -f5 /proc/$$/stat 2>/dev/null || echo $$)\"; "
    );
    let mut stdin = Vec::new();
    let sudo = match sudo_password {
        Some(pw) => {
            inner.push_str(&format!(
                "while IFS= read -r __claw_l; do [ \"$__claw_l\" = {STDIN_MARK} ] && break; done; unset __claw_l; "
            ));
            stdin.extend_from_slice(pw.expose().as_bytes());
            stdin.extend_from_slice(format!("\n{STDIN_MARK}\n").as_bytes());
            "sudo -S -p ''"
        }
        None => "sudo -n",
    };
    inner.push_str(&read_env);
    inner.push_str(&cmd.command);
    stdin.extend_from_slice(exports.as_bytes());
    (format!("exec {sudo} -- sh -c {}", quote(&inner)), stdin)
}

/// A shell variable name.
fn is_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn capture(buf: &mut Vec<u8>, dropped: &mut u64, bytes: &[u8]) {
    let room = MAX_CAPTURE.saturating_sub(buf.len());
    let take = room.min(bytes.len());
    buf.extend_from_slice(&bytes[..take]);
    *dropped += (bytes.len() - take) as u64;
}
