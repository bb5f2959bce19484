//! The audit log: `audit.log` in the data directory, one JSON object per line, each entry chained
//! to the one before it by a SHA-256 hash, so that editing, deleting, reordering or truncating
//! entries is detected by [`AuditLog::verify`].
//!
//! An entry is `{ts, seq, actor, action, target, outcome, detail, source, metadata, prev, hash}`
//! where `hash = sha256(prev || canonical JSON of the entry without hash)` and `prev` is the hash
//! of the entry before it (64 zeros for the first). Canonical JSON is compact with keys sorted.
//! `detail` is a one-line string and `source` the actor, as the seed writes them (its `audit
//! tail` renders both as text); the event's structured detail is in `metadata`. Entries written
//! before that (an object in `detail`, no `metadata`) still verify: see [`entry_data`].
//!
//! Lines written by the seed system (`{ts, action, detail, source}`, no hash) are accepted as a
//! legacy prefix and reported as unchained. A last line torn by a crash is reported by `verify`
//! and, on the next append, moved aside to `audit.log.torn-<time>` (never glued to the next
//! entry), with an `audit.repaired` entry saying so.
//!
//! Appends take an exclusive lock on the file, so several claw processes can write one log; each
//! append is one `write` of a whole line followed by `fsync`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The `prev` of the first chained entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How far back from the end an append looks for the last entry.
const TAIL_WINDOW: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the last entry cannot be read ({why}); run `claw audit verify`")]
    Unreadable { path: PathBuf, why: String },
}

impl crate::error::ExitStatus for AuditError {
    fn exit_status(&self) -> u8 {
        crate::error::INTERNAL
    }
}

/// What an entry records: every action claw audits, each with its dotted name as written in
/// `audit.log` (`claw audit search --action` matches a name or a prefix of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `workflow.run.started`: a run started.
    WorkflowRunStarted,
    /// `workflow.run.resumed`: a run was carried on by another process.
    WorkflowRunResumed,
    /// `workflow.run.interrupted`: the daemon stopped a run, which stays resumable.
    WorkflowRunInterrupted,
    /// `workflow.run.finished`: a run ended.
    WorkflowRunFinished,
    /// `workflow.run.cancel_requested`: someone asked a run to stop.
    WorkflowRunCancelRequested,
    /// `workflow.step.started`: an attempt of a step started.
    WorkflowStepStarted,
    /// `workflow.step.finished`: a step ended.
    WorkflowStepFinished,
    /// `workflow.step.decided`: a person decided an interrupted step.
    WorkflowStepDecided,
    /// `approval.requested`: an approval gate opened.
    ApprovalRequested,
    /// `approval.decided`: a vote, or a deadline, decided a gate.
    ApprovalDecided,
    /// `approval.refused`: a decision was refused (not allowed, a second vote, bad input).
    ApprovalRefused,
    /// `skill.run`: a skill ran (or was refused).
    SkillRun,
    /// `skill.hub.push`: a skill was pushed to SkillHub.
    SkillHubPush,
    /// `skill.hub.pull`: a skill was pulled from SkillHub.
    SkillHubPull,
    /// `schedule.missed`: fires were missed while claw was down.
    ScheduleMissed,
    /// `schedule.skipped`: a fire was skipped (overlap).
    ScheduleSkipped,
    /// `serve.started`: the daemon started.
    ServeStarted,
    /// `serve.stopped`: the daemon stopped.
    ServeStopped,
    /// `audit.repaired`: a torn last line of the audit log was moved aside.
    AuditRepaired,
    /// `vault.init`: a vault was created.
    VaultInit,
    /// `vault.set`: a secret was stored.
    VaultSet,
    /// `vault.get.reveal`: a secret was shown in clear.
    VaultGetReveal,
    /// `vault.delete`: a secret was deleted.
    VaultDelete,
    /// `vault.rotate_key`: the vault's key was rotated.
    VaultRotateKey,
    /// `vault.passphrase.set`: the identity was protected with a passphrase.
    VaultPassphraseSet,
    /// `vault.passphrase.remove`: the identity's passphrase was removed.
    VaultPassphraseRemove,
    /// `vault.rotation.policy_set`: a rotation policy was set.
    VaultRotationPolicySet,
    /// `cron.add`: a cron job was added.
    CronAdd,
    /// `cron.remove`: a cron job was removed.
    CronRemove,
    /// `cron.enable`: a cron job was enabled.
    CronEnable,
    /// `cron.disable`: a cron job was disabled.
    CronDisable,
    /// `cron.run`: a cron job was run by hand.
    CronRun,
    /// `config.validation_failed`: a file failed validation.
    ConfigValidationFailed,
    /// `webhook.accepted`: a webhook delivery started a run.
    WebhookAccepted,
    /// `watcher.action`: a file watcher's action ran.
    WatcherAction,
    /// `ssh.run`: a command ran on a host (host, command masked, exit status, duration).
    SshRun,
    /// `ssh.trust`: a host key was pinned (`claw ssh trust`, or on first use).
    SshTrust,
    /// `ssh.hostkey.refused`: a connection was refused for its host key.
    SshHostKeyRefused,
    /// `ssh.transfer`: a file was uploaded to or downloaded from a host (SFTP).
    SshTransfer,
    /// `message.sent`: a message was delivered (or given up on) to one target.
    MessageSent,
    /// `llm.fallback`: a provider failed and the next one in the chain was asked.
    LlmFallback,
    /// `llm.tool_call`: an llm step's model called a tool (tool, arguments masked, duration).
    LlmToolCall,
    /// `llm.set_default`: the default provider was changed (`claw llm set-default`).
    LlmSetDefault,
    /// `memory.remember`: a memory was stored or updated (key, category, project; never the value).
    MemoryRemember,
    /// `memory.forget`: memories were deleted by key.
    MemoryForget,
    /// `memory.decay`: memories not accessed for N days were deleted.
    MemoryDecay,
    /// `chat.access`: a chat asked for access, was allowed, denied or removed, or was refused.
    ChatAccess,
    /// `chat.command`: a command arrived from an allowed chat (its name, never the text).
    ChatCommand,
    /// `browser.profile.deleted`: a browser profile was deleted (`claw browse profiles delete`).
    BrowserProfileDeleted,
    /// `policy.denied`: a policy rule refused a command.
    PolicyDenied,
    /// `policy.approval_required`: a policy rule made a command wait for approval.
    PolicyApprovalRequired,
    /// `policy.allowed`: an `allow` rule let a command through that another rule would stop.
    PolicyAllowed,
    /// `pack.install`: a pack was installed or updated.
    PackInstall,
    /// `pack.uninstall`: a pack was removed.
    PackUninstall,
    /// `dashboard.login`: a person logged in to the dashboard (or a login was refused: outcome `failed`, `throttled`).
    DashboardLogin,
    /// `dashboard.logout`: a dashboard session ended by logging out.
    DashboardLogout,
    /// `dashboard.user.add`: a dashboard user was added.
    DashboardUserAdd,
    /// `dashboard.user.passwd`: a dashboard user's password was changed (their sessions end).
    DashboardUserPasswd,
    /// `dashboard.user.remove`: a dashboard user was removed.
    DashboardUserRemove,
    /// `dashboard.token.add`: an API token was made for a dashboard user.
    DashboardTokenAdd,
    /// `dashboard.token.remove`: an API token was revoked.
    DashboardTokenRemove,
    /// `dashboard.refused`: a state-changing dashboard request was refused (CSRF token, Origin).
    DashboardRefused,
    /// `dashboard.run.start`: a run was started from the dashboard or its API.
    DashboardRunStart,
    /// `browser.submit`: a form was filled and submitted (`browse_fill_and_submit`; the field
    /// selectors, never the values).
    BrowserSubmit,
    /// `mcp.refused`: a request to `/mcp` without the right bearer token.
    McpRefused,
    /// `intake.context_cleared`: the runtime files of the previous request were cleared.
    IntakeContextCleared,
    /// `intake.requirements_extracted`: the request was split into requirements.
    IntakeRequirementsExtracted,
    /// `intake.plan_built`: each requirement got a role and a skill (or none).
    IntakePlanBuilt,
    /// `intake.skill_mapped`: a requirement was mapped to a skill.
    IntakeSkillMapped,
    /// `intake.skill_map_failed`: no skill fits a requirement.
    IntakeSkillMapFailed,
    /// `intake.task_started`: a mapped skill started.
    IntakeTaskStarted,
    /// `intake.task_completed`: a mapped skill ended (outcome ok or failed).
    IntakeTaskCompleted,
    /// `intake.session_saved`: `runtime/current_request.json` was written.
    IntakeSessionSaved,
    /// `intake.notification`: a start or finish message was queued.
    IntakeNotification,
}

impl Action {
    pub const ALL: &'static [Self] = &[
        Self::WorkflowRunStarted,
        Self::WorkflowRunResumed,
        Self::WorkflowRunInterrupted,
        Self::WorkflowRunFinished,
        Self::WorkflowRunCancelRequested,
        Self::WorkflowStepStarted,
        Self::WorkflowStepFinished,
        Self::WorkflowStepDecided,
        Self::ApprovalRequested,
        Self::ApprovalDecided,
        Self::ApprovalRefused,
        Self::SkillRun,
        Self::SkillHubPush,
        Self::SkillHubPull,
        Self::ScheduleMissed,
        Self::ScheduleSkipped,
        Self::ServeStarted,
        Self::ServeStopped,
        Self::AuditRepaired,
        Self::VaultInit,
        Self::VaultSet,
        Self::VaultGetReveal,
        Self::VaultDelete,
        Self::VaultRotateKey,
        Self::VaultPassphraseSet,
        Self::VaultPassphraseRemove,
        Self::VaultRotationPolicySet,
        Self::CronAdd,
        Self::CronRemove,
        Self::CronEnable,
        Self::CronDisable,
        Self::CronRun,
        Self::ConfigValidationFailed,
        Self::WebhookAccepted,
        Self::WatcherAction,
        Self::SshRun,
        Self::SshTrust,
        Self::SshHostKeyRefused,
        Self::SshTransfer,
        Self::MessageSent,
        Self::LlmFallback,
        Self::LlmToolCall,
        Self::LlmSetDefault,
        Self::MemoryRemember,
        Self::MemoryForget,
        Self::MemoryDecay,
        Self::ChatAccess,
        Self::ChatCommand,
        Self::BrowserProfileDeleted,
        Self::PolicyDenied,
        Self::PolicyApprovalRequired,
        Self::PolicyAllowed,
        Self::PackInstall,
        Self::PackUninstall,
        Self::DashboardLogin,
        Self::DashboardLogout,
        Self::DashboardUserAdd,
        Self::DashboardUserPasswd,
        Self::DashboardUserRemove,
        Self::DashboardTokenAdd,
        Self::DashboardTokenRemove,
        Self::DashboardRefused,
        Self::DashboardRunStart,
        Self::McpRefused,
        Self::IntakeContextCleared,
        Self::IntakeRequirementsExtracted,
        Self::IntakePlanBuilt,
        Self::IntakeSkillMapped,
        Self::IntakeSkillMapFailed,
        Self::IntakeTaskStarted,
        Self::IntakeTaskCompleted,
        Self::IntakeSessionSaved,
        Self::IntakeNotification,
        Self::BrowserSubmit,
    ];

    /// The dotted name written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkflowRunStarted => "workflow.run.started",
            Self::WorkflowRunResumed => "workflow.run.resumed",
            Self::WorkflowRunInterrupted => "workflow.run.interrupted",
            Self::WorkflowRunFinished => "workflow.run.finished",
            Self::WorkflowRunCancelRequested => "workflow.run.cancel_requested",
            Self::WorkflowStepStarted => "workflow.step.started",
            Self::WorkflowStepFinished => "workflow.step.finished",
            Self::WorkflowStepDecided => "workflow.step.decided",
            Self::ApprovalRequested => "approval.requested",
            Self::ApprovalDecided => "approval.decided",
            Self::ApprovalRefused => "approval.refused",
            Self::SkillRun => "skill.run",
            Self::SkillHubPush => "skill.hub.push",
            Self::SkillHubPull => "skill.hub.pull",
            Self::ScheduleMissed => "schedule.missed",
            Self::ScheduleSkipped => "schedule.skipped",
            Self::ServeStarted => "serve.started",
            Self::ServeStopped => "serve.stopped",
            Self::AuditRepaired => "audit.repaired",
            Self::VaultInit => "vault.init",
            Self::VaultSet => "vault.set",
            Self::VaultGetReveal => "vault.get.reveal",
            Self::VaultDelete => "vault.delete",
            Self::VaultRotateKey => "vault.rotate_key",
            Self::VaultPassphraseSet => "vault.passphrase.set",
            Self::VaultPassphraseRemove => "vault.passphrase.remove",
            Self::VaultRotationPolicySet => "vault.rotation.policy_set",
            Self::CronAdd => "cron.add",
            Self::CronRemove => "cron.remove",
            Self::CronEnable => "cron.enable",
            Self::CronDisable => "cron.disable",
            Self::CronRun => "cron.run",
            Self::ConfigValidationFailed => "config.validation_failed",
            Self::WebhookAccepted => "webhook.accepted",
            Self::WatcherAction => "watcher.action",
            Self::SshRun => "ssh.run",
            Self::SshTrust => "ssh.trust",
            Self::SshHostKeyRefused => "ssh.hostkey.refused",
            Self::SshTransfer => "ssh.transfer",
            Self::MessageSent => "message.sent",
            Self::LlmFallback => "llm.fallback",
            Self::LlmToolCall => "llm.tool_call",
            Self::LlmSetDefault => "llm.set_default",
            Self::MemoryRemember => "memory.remember",
            Self::MemoryForget => "memory.forget",
            Self::MemoryDecay => "memory.decay",
            Self::ChatAccess => "chat.access",
            Self::ChatCommand => "chat.command",
            Self::BrowserProfileDeleted => "browser.profile.deleted",
            Self::PolicyDenied => "policy.denied",
            Self::PolicyApprovalRequired => "policy.approval_required",
            Self::PolicyAllowed => "policy.allowed",
            Self::PackInstall => "pack.install",
            Self::PackUninstall => "pack.uninstall",
            Self::DashboardLogin => "dashboard.login",
            Self::DashboardLogout => "dashboard.logout",
            Self::DashboardUserAdd => "dashboard.user.add",
            Self::DashboardUserPasswd => "dashboard.user.passwd",
            Self::DashboardUserRemove => "dashboard.user.remove",
            Self::DashboardTokenAdd => "dashboard.token.add",
            Self::DashboardTokenRemove => "dashboard.token.remove",
            Self::DashboardRefused => "dashboard.refused",
            Self::DashboardRunStart => "dashboard.run.start",
            Self::McpRefused => "mcp.refused",
            Self::IntakeContextCleared => "intake.context_cleared",
            Self::IntakeRequirementsExtracted => "intake.requirements_extracted",
            Self::IntakePlanBuilt => "intake.plan_built",
            Self::IntakeSkillMapped => "intake.skill_mapped",
            Self::IntakeSkillMapFailed => "intake.skill_map_failed",
            Self::IntakeTaskStarted => "intake.task_started",
            Self::IntakeTaskCompleted => "intake.task_completed",
            Self::IntakeSessionSaved => "intake.session_saved",
            Self::IntakeNotification => "intake.notification",
            Self::BrowserSubmit => "browser.submit",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Who: `cli:<user>`, `engine`, `telegram:<id>`, …
    pub actor: String,
    /// What.
    pub action: Action,
    /// On what: a run id, a workflow name, a key name (never a secret value).
    pub target: String,
    /// `ok`, `failed`, `refused`, …
    pub outcome: String,
    pub detail: Value,
}

impl Event {
    pub fn new(actor: &str, action: Action, target: &str, outcome: &str, detail: Value) -> Self {
        Self {
            actor: actor.to_owned(),
            action,
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            detail,
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A chained entry.
    Entry(Value),
    /// A seed-format line (no hash).
    Legacy(Value),
}

impl Line {
    pub fn value(&self) -> &Value {
        match self {
            Self::Entry(v) | Self::Legacy(v) => v,
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Chained entries read (up to the first problem).
    pub entries: usize,
    /// Seed-format lines before the chain starts.
    pub legacy: usize,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// The first broken place of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// An entry's content does not match its hash.
    Edited,
    /// Entries are missing before this one.
    Deleted,
    /// Entries are out of order.
    Reordered,
    /// The chain does not link (`prev` is not the previous entry's hash).
    Broken,
    /// A line that is not an entry.
    Garbled,
    /// The last line is incomplete (a crash while writing, or a truncated file).
    Torn,
    /// Whole entries are gone from the end (the anchor names a later entry than the log's last).
    Truncated,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AuditError + 'a {
    move |source| AuditError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The anchor file's length: its text padded with spaces (see [`AuditLog::write_anchor`]).
const ANCHOR_BYTES: usize = 128;

/// The hash of an entry: sha256 over `prev` then the canonical JSON of the entry without `hash`.
pub fn entry_hash(entry: &Map<String, Value>) -> String {
    hash_of(entry, &canonical(entry).0)
}

/// The canonical form of an entry: the compact JSON of its fields but `hash`, keys sorted (what
/// serializing the map without `hash` gives). With it, where `"hash":…` goes in the entry's
/// line: before the first key that sorts after it.
fn canonical(entry: &Map<String, Value>) -> (Vec<u8>, usize) {
    let mut canon = Vec::with_capacity(512);
    canon.push(b'{');
    let mut at = None;
    for (k, v) in entry.iter().filter(|(k, _)| k.as_str() != "hash") {
        if at.is_none() && k.as_str() > "hash" {
            at = Some(canon.len());
        }
        if canon.len() > 1 {
            canon.push(b',');
        }
        // Writing a string and a JSON value into memory cannot fail.
        let _ = serde_json::to_writer(&mut canon, k);
        canon.push(b':');
        let _ = serde_json::to_writer(&mut canon, v);
    }
    canon.push(b'}');
    let at = at.unwrap_or(canon.len() - 1);
    (canon, at)
}

/// sha256 over the entry's `prev`, then its canonical form.
fn hash_of(entry: &Map<String, Value>, canon: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(
        entry
            .get("prev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update(canon);
    hex::encode(h.finalize())
}

/// The audit log of one data directory.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    /// The daemon's: synced entries are synced by a shared, background sync (see
    /// [`AuditLog::write_behind`]).
    write_behind: Option<std::sync::Arc<crate::fsutil::GroupSync>>,
    /// The entry this process appended last, with the file it went to (device, inode) and the
    /// file's length after it: while the file is that long, the entry is still its last line and
    /// the next append chains to it without reading the file's end back.
    tail: std::sync::Arc<std::sync::Mutex<Option<Tail>>>,
}

/// See [`AuditLog::tail`].
#[derive(Debug)]
struct Tail {
    dev: u64,
    ino: u64,
    len: u64,
    last: Value,
}

impl AuditLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            write_behind: None,
            tail: std::sync::Arc::default(),
        }
    }

    fn tail_cache(&self) -> std::sync::MutexGuard<'_, Option<Tail>> {
        self.tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// For the daemon, where the thread that records entries also drives every run: an entry
    /// that asks for a sync is written at once (a crash of claw cannot lose it) and synced by a
    /// blocking task shared with the entries written meanwhile, so the thread never waits for
    /// the disk. A power cut can lose the entries of the last sync interval (milliseconds).
    #[must_use]
    pub fn write_behind(mut self) -> Self {
        self.write_behind = Some(std::sync::Arc::new(crate::fsutil::GroupSync::new(
            self.path.clone(),
        )));
        self
    }

    /// `<home>/audit.log`.
    pub fn in_dir(home: &Path) -> Self {
        Self::new(&home.join("audit.log"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry, chained to the last one, and syncs it to disk before returning.
    pub fn record(&self, event: &Event) -> Result<Value, AuditError> {
        let mut last = self.record_batch(std::slice::from_ref(event), true)?;
        last.pop().ok_or_else(|| AuditError::Unreadable {
            path: self.path.clone(),
            why: "nothing was appended".into(),
        })
    }

    /// Appends several entries under one lock. With `sync`, they are on disk before this returns;
    /// without, they are written (a crash of claw cannot lose them, a power cut can) and reach
    /// the disk with the next synced append — used for step start/finish entries, whose
    /// transitions the store already holds durably.
    pub fn record_batch(&self, events: &[Event], sync: bool) -> Result<Vec<Value>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            // A symlink in its place (to another file, to /dev/null) is refused: entries go to
            // the data directory's own log or nowhere, and whoever acts is told.
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(io("open", &self.path))?;
        let mut file =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| AuditError::Io {
                what: "lock",
                path: self.path.clone(),
                source: e.into(),
            })?;
        let meta = file.metadata().map_err(io("read", &self.path))?;
        // Another writer (another claw process, a repair, an edit) changes the length: then the
        // end is read back. The lock is held, so nothing appends between this look and the write.
        let cached = self.tail_cache().as_ref().and_then(|t| {
            (t.dev == meta.dev() && t.ino == meta.ino() && t.len == meta.len())
                .then(|| t.last.clone())
        });
        let (mut last, torn) = match cached {
            Some(last) => (Some(last), None),
            None => self.read_tail(&mut file, meta.len())?,
        };
        let repaired = torn.is_some();
        if let Some((keep, fragment)) = torn {
            // Move the torn bytes aside and say so in the chain.
            let aside = self.path.with_file_name(format!(
                "{}.torn-{}",
                self.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                crate::time::compact_millis(chrono::Utc::now())
            ));
            std::fs::write(&aside, &fragment).map_err(io("write", &aside))?;
            file.set_len(keep).map_err(io("truncate", &self.path))?;
            let repair = Event::new(
                "claw",
                Action::AuditRepaired,
                &self.path.display().to_string(),
                "ok",
                json!({"torn_bytes": fragment.len(), "saved_to": aside.display().to_string()}),
            );
            last = Some(self.append(&mut file, &repair, last.as_ref())?);
        }
        let mut text = String::new();
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let (value, line) = Self::entry_after(event, last.as_ref());
            text.push_str(&line);
            text.push('\n');
            last = Some(value.clone());
            out.push(value);
        }
        // One write of all the lines (O_APPEND), then to disk.
        let written = file.write_all(text.as_bytes());
        *self.tail_cache() = match (&written, &last, repaired) {
            (Ok(()), Some(v), false) => Some(Tail {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len() + text.len() as u64,
                last: v.clone(),
            }),
            _ => None,
        };
        written.map_err(io("write", &self.path))?;
        let mut behind = None;
        if sync {
            match &self.write_behind {
                Some(group) => behind = Some((group.clone(), group.note_write())),
                None => file.sync_data().map_err(io("sync", &self.path))?,
            }
        }
        if let Some(v) = &last {
            self.write_anchor(v);
        }
        drop(file);
        if let Some((group, ticket)) = behind {
            let sync = move || {
                if let Err(e) = group.wait(ticket) {
                    tracing::error!("cannot sync the audit log to disk: {e}");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(sync)),
                Err(_) => sync(),
            }
        }
        for (value, event) in out.iter().zip(events) {
            trace_entry(value.get("seq").and_then(Value::as_u64).unwrap_or(0), event);
        }
        Ok(out)
    }

    /// `audit.log.anchor`: the newest entry's `seq` and `hash`, rewritten after each append
    /// (under the log's lock). A hash chain alone cannot show entries cut from its end; the
    /// anchor can. Written after the log, so a crash leaves it behind the log, never ahead (but
    /// without `sync`, a power cut may keep the anchor and lose the log's last lines).
    ///
    /// The text is padded with spaces to [`ANCHOR_BYTES`] and overwritten in place: truncating
    /// a file with data and writing it again made ext4 start writing it back at `close`
    /// (`auto_da_alloc`, its guard for replace-by-truncate), a sixth of a short step's CPU.
    fn write_anchor(&self, last: &Value) {
        use std::os::unix::fs::FileExt as _;
        let (Some(seq), Some(hash)) = (
            last.get("seq").and_then(Value::as_u64),
            last.get("hash").and_then(Value::as_str),
        ) else {
            return;
        };
        let mut text = format!("{{\"seq\":{seq},\"hash\":\"{hash}\"}}");
        let width = ANCHOR_BYTES.max(text.len() + 1);
        text.extend(std::iter::repeat_n(' ', width - 1 - text.len()));
        text.push('\n');
        // Best effort: the log is the record; a missing anchor only weakens the end check.
        if let Ok(f) = OpenOptions::new()
            .create(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.anchor_path())
            && f.write_all_at(text.as_bytes(), 0).is_ok()
            // An anchor written by an older claw (unpadded) is shorter; a longer file is not
            // one claw wrote whole: either way nothing may follow the text.
            && f.metadata().is_ok_and(|m| m.len() != text.len() as u64)
        {
            let _ = f.set_len(text.len() as u64);
        }
    }

    /// Where the anchor is kept: beside the log.
    pub fn anchor_path(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".anchor");
        PathBuf::from(p)
    }

    /// The anchor's `seq` and `hash`, if it is there and reads.
    fn read_anchor(&self) -> Option<(u64, String)> {
        let text = std::fs::read_to_string(self.anchor_path()).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        Some((v.get("seq")?.as_u64()?, v.get("hash")?.as_str()?.to_owned()))
    }

    /// The entry chained after `last`, and its line.
    fn entry_after(event: &Event, last: Option<&Value>) -> (Value, String) {
        let (seq, prev) = match last {
            Some(v) if v.get("hash").is_some() => (
                v.get("seq").and_then(Value::as_u64).unwrap_or(0) + 1,
                v.get("hash")
                    .and_then(Value::as_str)
                    .unwrap_or(GENESIS)
                    .to_owned(),
            ),
            _ => (1, GENESIS.to_owned()),
        };
        let (entry, line) = build_entry(seq, &prev, event.clone());
        (Value::Object(entry), line)
    }

    fn append(
        &self,
        file: &mut File,
        event: &Event,
        last: Option<&Value>,
    ) -> Result<Value, AuditError> {
        let (value, mut line) = Self::entry_after(event, last);
        line.push('\n');
        file.write_all(line.as_bytes())
            .map_err(io("write", &self.path))?;
        file.sync_data().map_err(io("sync", &self.path))?;
        trace_entry(value.get("seq").and_then(Value::as_u64).unwrap_or(0), event);
        Ok(value)
    }

    /// The last complete line, and the torn fragment after it (with the length to keep) if the
    /// file does not end with a newline.
    #[allow(clippy::type_complexity)]
    fn read_tail(
        &self,
        file: &mut File,
        len: u64,
    ) -> Result<(Option<Value>, Option<(u64, Vec<u8>)>), AuditError> {
        if len == 0 {
            return Ok((None, None));
        }
        // Read back from the end in growing windows until the window holds the last complete
        // line (entries are a few hundred bytes: one small read is the usual case).
        let mut window = 4096u64;
        let (start, buf) = loop {
            let start = len.saturating_sub(window);
            file.seek(SeekFrom::Start(start))
                .map_err(io("read", &self.path))?;
            let mut buf = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
            file.read_to_end(&mut buf).map_err(io("read", &self.path))?;
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let has_line_start = body.iter().rposition(|&b| b == b'\n').is_some_and(|i| {
                // A newline before the last line (or before the torn tail and a line before it).
                buf.last() == Some(&b'\n') || body[..i].contains(&b'\n') || start == 0
            });
            if start == 0 || has_line_start || window >= TAIL_WINDOW {
                break (start, buf);
            }
            window *= 4;
        };
        let mut torn = None;
        let mut body = &buf[..];
        if buf.last() != Some(&b'\n') {
            let cut = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            torn = Some((start + cut as u64, buf[cut..].to_vec()));
            body = &buf[..cut];
        }
        let last = body
            .split(|&b| b == b'\n')
            .rev()
            .find(|l| !l.iter().all(u8::is_ascii_whitespace));
        let last =
            match last {
                None => None,
                Some(l) => Some(serde_json::from_slice::<Value>(l).map_err(|e| {
                    AuditError::Unreadable {
                        path: self.path.clone(),
                        why: e.to_string(),
                    }
                })?),
            };
        Ok((last, torn))
    }

    /// Every line, oldest first. A missing file is an empty log.
    pub fn lines(&self) -> Result<Vec<Line>, AuditError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &self.path)(e)),
        };
        let mut out = Vec::new();
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(io("read", &self.path))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                if v.get("hash").is_some() {
                    out.push(Line::Entry(v));
                } else {
                    out.push(Line::Legacy(v));
                }
            }
        }
        Ok(out)
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> Result<Vec<Line>, AuditError> {
        let mut all = self.lines()?;
        let cut = all.len().saturating_sub(n);
        Ok(all.split_off(cut))
    }

    /// Lines matching every given filter, oldest first. `text` matches anywhere in the line,
    /// case-insensitively; `since`/`until` keep the lines whose `ts` is in that range, both
    /// ends included (a line whose `ts` does not read as a time is then left out).
    pub fn search(&self, q: &Query) -> Result<Vec<Line>, AuditError> {
        let text = q.text.as_deref().map(str::to_lowercase);
        let in_range = |ts: &str| {
            if q.since.is_none() && q.until.is_none() {
                return true;
            }
            crate::time::parse_iso(ts).is_some_and(|ts| {
                q.since.is_none_or(|s| ts >= s) && q.until.is_none_or(|u| ts <= u)
            })
        };
        Ok(self
            .lines()?
            .into_iter()
            .filter(|l| {
                let v = l.value();
                let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
                text.as_ref()
                    .is_none_or(|t| v.to_string().to_lowercase().contains(t))
                    && q.action.as_deref().is_none_or(|a| {
                        field("action") == a || field("action").starts_with(&format!("{a}."))
                    })
                    && q.actor.as_deref().is_none_or(|a| field("actor") == a)
                    && in_range(field("ts"))
            })
            .collect())
    }

    /// Checks the whole chain and names the first broken entry.
    pub fn verify(&self) -> Result<Report, AuditError> {
        let mut bytes = Vec::new();
        match File::open(&self.path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io("read", &self.path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", &self.path)(e)),
        }
        let ends_clean = bytes.is_empty() || bytes.last() == Some(&b'\n');
        let raw: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        // The piece after the last newline is empty when the file ends cleanly.
        let count = raw.len() - usize::from(ends_clean);
        let mut report = Report {
            entries: 0,
            legacy: 0,
            problem: None,
        };
        let mut last_hash = GENESIS.to_owned();
        let mut expected_seq = 1u64;
        let anchor = self.read_anchor();
        let mut anchor_seen = false;
        // Sequence numbers of all lines, to tell a deletion from a reordering.
        let seqs: Vec<Option<u64>> = raw[..count]
            .iter()
            .map(|l| {
                serde_json::from_slice::<Value>(l)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64))
            })
            .collect();
        for (i, line) in raw[..count].iter().enumerate() {
            let n = i + 1;
            let fail = |kind, message: String| Problem {
                line: n,
                kind,
                message,
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value = match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(m)) => m,
                _ if i + 1 == count && !ends_clean => {
                    report.problem = Some(fail(
                        ProblemKind::Torn,
                        format!(
                            "line {n} is an incomplete entry (a crash while writing, or the file was cut); the next append moves it aside"
                        ),
                    ));
                    return Ok(report);
                }
                _ => {
                    report.problem = Some(fail(
                        ProblemKind::Garbled,
                        format!("line {n} is not an audit entry"),
                    ));
                    return Ok(report);
                }
            };
            let Some(hash) = value.get("hash").and_then(Value::as_str) else {
                if report.entries == 0 {
                    report.legacy += 1;
                    continue;
                }
                report.problem = Some(fail(
                    ProblemKind::Garbled,
                    format!("line {n} has no hash, after the chain began (an inserted line?)"),
                ));
                return Ok(report);
            };
            let seq = value.get("seq").and_then(Value::as_u64).unwrap_or(0);
            if entry_hash(&value) != hash {
                report.problem = Some(fail(
                    ProblemKind::Edited,
                    format!(
                        "entry {seq} (line {n}) was changed: its content does not match its hash"
                    ),
                ));
                return Ok(report);
            }
            if seq != expected_seq {
                let (kind, message) = if seq < expected_seq {
                    (
                        ProblemKind::Reordered,
                        format!(
                            "entry {seq} (line {n}) is out of order: entry {expected_seq} was expected"
                        ),
                    )
                } else if seqs[i + 1..].contains(&Some(expected_seq)) {
                    (
                        ProblemKind::Reordered,
                        format!(
                            "entry {seq} (line {n}) is out of order: entry {expected_seq} comes later"
                        ),
                    )
                } else {
                    (
                        ProblemKind::Deleted,
                        format!(
                            "entries {expected_seq}..{} are missing before line {n}",
                            seq - 1
                        ),
                    )
                };
                report.problem = Some(fail(kind, message));
                return Ok(report);
            }
            let prev = value
                .get("prev")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if prev != last_hash {
                report.problem = Some(fail(
                    ProblemKind::Broken,
                    format!(
                        "entry {seq} (line {n}) does not link to the entry before it (the chain was rewritten from here)"
                    ),
                ));
                return Ok(report);
            }
            if let Some((aseq, ahash)) = &anchor
                && *aseq == seq
            {
                if ahash != hash {
                    report.problem = Some(fail(
                        ProblemKind::Broken,
                        format!(
                            "entry {seq} (line {n}) is not the entry {seq} that was written (its hash differs from the one in {}): the log was rewritten",
                            self.anchor_path().display()
                        ),
                    ));
                    return Ok(report);
                }
                anchor_seen = true;
            }
            last_hash = hash.to_owned();
            expected_seq = seq + 1;
            report.entries += 1;
        }
        if let Some((aseq, _)) = anchor
            && !anchor_seen
            && aseq >= expected_seq
        {
            report.problem = Some(Problem {
                line: count + 1,
                kind: ProblemKind::Truncated,
                message: format!(
                    "the log ends at entry {}, but entry {aseq} was written ({} keeps its hash): entries {expected_seq}..{aseq} were removed from the end",
                    expected_seq - 1,
                    self.anchor_path().display()
                ),
            });
        }
        Ok(report)
    }
}

/// Filters for [`AuditLog::search`].
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub text: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Writes `events` as a fresh chained log in one go (for benchmarks and tests: no lock, one
/// sync at the end).
pub fn write_chain(path: &Path, events: impl IntoIterator<Item = Event>) -> Result<(), AuditError> {
    let mut out = String::new();
    let mut prev = GENESIS.to_owned();
    for (i, e) in events.into_iter().enumerate() {
        let (entry, line) = build_entry(i as u64 + 1, &prev, e);
        prev = entry
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        out.push_str(&line);
        out.push('\n');
    }
    let mut f = File::create(path).map_err(io("create", path))?;
    f.write_all(out.as_bytes()).map_err(io("write", path))?;
    f.sync_all().map_err(io("sync", path))
}

/// The tracing mirror of a recorded entry (target `claw::audit`), emitted once the entry is on
/// disk, so the trace never shows an entry the log does not have. The detail is masked.
fn trace_entry(seq: u64, event: &Event) {
    // The masked copy of the detail is made only for a subscriber that takes the line.
    if !tracing::enabled!(target: "claw::audit", tracing::Level::INFO) {
        return;
    }
    let detail = crate::redact::global().redact_json(&event.detail);
    tracing::info!(
        target: "claw::audit",
        seq,
        actor = %event.actor,
        action = %event.action,
        "target" = %event.target,
        outcome = %event.outcome,
        detail = %detail,
        "audit entry recorded"
    );
}

/// The structured detail of an entry: `metadata`, or an object `detail` (entries written before
/// `metadata` existed).
pub fn entry_data(entry: &Value) -> Option<&Map<String, Value>> {
    entry
        .get("metadata")
        .and_then(Value::as_object)
        .or_else(|| entry.get("detail").and_then(Value::as_object))
}

/// The `key=value` pairs of a structured detail, on one line (nested values as compact JSON).
pub fn pairs(data: &Map<String, Value>) -> String {
    data.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The seed-readable `detail`: the target, the outcome when it is not `ok`, then the pairs.
fn summary(target: &str, outcome: &str, detail: &Value) -> String {
    let mut out = target.to_owned();
    if !outcome.is_empty() && outcome != "ok" {
        out.push_str(&format!(" ({outcome})"));
    }
    if let Some(data) = detail.as_object().filter(|d| !d.is_empty()) {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&pairs(data));
    } else if !detail.is_null() && !detail.is_object() {
        out.push_str(&format!(": {detail}"));
    }
    out.replace(['\n', '\r'], " ")
}

/// An entry with its hash, chained to `prev`, and its line (the entry's compact JSON, keys
/// sorted, exactly what serializing it gives).
fn build_entry(seq: u64, prev: &str, e: Event) -> (Map<String, Value>, String) {
    let mut entry = Map::new();
    entry.insert("ts".into(), crate::time::iso_utc(chrono::Utc::now()).into());
    entry.insert("seq".into(), seq.into());
    entry.insert(
        "detail".into(),
        summary(&e.target, &e.outcome, &e.detail).into(),
    );
    entry.insert("source".into(), e.actor.clone().into());
    entry.insert("actor".into(), e.actor.into());
    entry.insert("action".into(), e.action.as_str().into());
    entry.insert("target".into(), e.target.into());
    entry.insert("outcome".into(), e.outcome.into());
    entry.insert("metadata".into(), e.detail);
    entry.insert("prev".into(), prev.into());
    let (hash, line) = hash_and_line(&entry);
    entry.insert("hash".into(), hash.into());
    (entry, line)
}

/// [`entry_hash`] and the entry's line once `hash` is added, from one serialization: the
/// canonical form (the entry without `hash`) is hashed, then `hash` is put in at its place in
/// key order.
fn hash_and_line(entry: &Map<String, Value>) -> (String, String) {
    let (canon, at) = canonical(entry);
    let hash = hash_of(entry, &canon);
    let field = format!("\"hash\":\"{hash}\"");
    let mut line = Vec::with_capacity(canon.len() + field.len() + 1);
    line.extend_from_slice(&canon[..at]);
    match (at, canon.len()) {
        // `{}`: the field alone.
        (1, 2) => line.extend_from_slice(field.as_bytes()),
        // First: a comma after it.
        (1, _) => {
            line.extend_from_slice(field.as_bytes());
            line.push(b',');
        }
        _ => {
            line.push(b',');
            line.extend_from_slice(field.as_bytes());
        }
    }
    line.extend_from_slice(&canon[at..]);
    // serde_json writes UTF-8 only.
    let line = String::from_utf8(line)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (hash, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::in_dir(dir.path());
        for i in 0..n {
            log.record(&Event::new(
                "cli:me",
                Action::WorkflowRunStarted,
                &format!("run{i}"),
                "ok",
                json!({"i": i}),
            ))
            .unwrap();
        }
        (dir, log)
    }

    fn rewrite(log: &AuditLog, f: impl FnOnce(&mut Vec<String>)) {
        let text = std::fs::read_to_string(log.path()).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        f(&mut lines);
        std::fs::write(log.path(), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_untouched_log_verifies() {
        let (_d, log) = log_with(20);
        let r = log.verify().unwrap();
        assert_eq!((r.entries, r.legacy, r.problem), (20, 0, None));
    }

    #[test]
    fn the_anchor_is_rewritten_in_place_whatever_was_there() {
        let (_d, log) = log_with(3);
        // An anchor left by an older claw (unpadded, shorter), and one with junk after it.
        for before in [
            "{\"seq\":1,\"hash\":\"ab\"}\n".to_owned(),
            format!("{}\n", "x".repeat(300)),
        ] {
            std::fs::write(log.anchor_path(), before).unwrap();
            let last = log
                .record(&Event::new(
                    "cli:me",
                    Action::WorkflowRunStarted,
                    "r",
                    "ok",
                    json!({}),
                ))
                .unwrap();
            let text = std::fs::read_to_string(log.anchor_path()).unwrap();
            assert_eq!(text.len(), ANCHOR_BYTES);
            assert!(text.ends_with(" \n"));
            assert_eq!(
                log.read_anchor(),
                Some((
                    last["seq"].as_u64().unwrap(),
                    last["hash"].as_str().unwrap().to_owned()
                ))
            );
            assert_eq!(log.verify().unwrap().problem, None);
        }
    }

    #[test]
    fn an_edited_field_is_named() {
        let (_d, log) = log_with(10);
        rewrite(&log, |l| l[4] = l[4].replace("run4", "run9"));
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!((p.line, p.kind), (5, ProblemKind::Edited), "{}", p.message);
        assert!(p.message.contains("entry 5"), "{}", p.message);
    }

    #[test]
    fn a_deleted_line_is_named() {
        let (_d, log) = log_with(10);
        rewrite(&log, |l| {
            l.remove(3);
        });
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!((p.line, p.kind), (4, ProblemKind::Deleted), "{}", p.message);
        assert!(
            p.message.contains("entries 4..4 are missing"),
            "{}",
            p.message
        );
    }

    #[test]
    fn swapped_lines_are_named() {
        let (_d, log) = log_with(10);
        rewrite(&log, |l| l.swap(2, 6));
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!(
            (p.line, p.kind),
            (3, ProblemKind::Reordered),
            "{}",
            p.message
        );
    }

    #[test]
    fn a_rewritten_chain_tail_is_caught() {
        // Someone recomputes the hash of an edited entry: the next entry no longer links.
        let (_d, log) = log_with(5);
        rewrite(&log, |l| {
            let mut v: Map<String, Value> = serde_json::from_str(&l[1]).unwrap();
            v.insert("target".into(), "forged".into());
            let h = entry_hash(&v);
            v.insert("hash".into(), h.into());
            l[1] = Value::Object(v).to_string();
        });
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!((p.line, p.kind), (3, ProblemKind::Broken), "{}", p.message);
    }

    #[test]
    fn a_torn_last_line_is_reported_then_moved_aside() {
        let (dir, log) = log_with(3);
        let full = std::fs::read(log.path()).unwrap();
        std::fs::write(log.path(), &full[..full.len() - 20]).unwrap();
        let p = log.verify().unwrap().problem.unwrap();
        assert_eq!((p.line, p.kind), (3, ProblemKind::Torn), "{}", p.message);
        log.record(&Event::new(
            "cli:me",
            Action::VaultSet,
            "y",
            "ok",
            json!({}),
        ))
        .unwrap();
        let r = log.verify().unwrap();
        assert_eq!(r.problem, None);
        assert_eq!(r.entries, 4, "2 kept + repair + new");
        let lines = log.lines().unwrap();
        assert_eq!(lines[2].value()["action"], "audit.repaired");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
            .collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn seed_lines_are_a_legacy_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::in_dir(dir.path());
        std::fs::write(
            log.path(),
            "{\"ts\": \"2026-01-01T00:00:00\", \"action\": \"skill.run\", \"detail\": \"heartbeat\", \"source\": \"cli\"}\n",
        )
        .unwrap();
        log.record(&Event::new(
            "cli:me",
            Action::VaultSet,
            "KEY",
            "ok",
            json!({}),
        ))
        .unwrap();
        let r = log.verify().unwrap();
        assert_eq!((r.entries, r.legacy, r.problem), (1, 1, None));
        assert_eq!(
            log.search(&Query {
                text: Some("HEARTBEAT".into()),
                ..Query::default()
            })
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            log.search(&Query {
                action: Some("vault".into()),
                ..Query::default()
            })
            .unwrap()
            .len(),
            1
        );
    }

    #[test]
    fn entries_longer_than_the_first_read_window_chain_correctly() {
        let (_d, log) = log_with(2);
        let big = "x".repeat(50_000);
        log.record(&Event::new(
            "a",
            Action::VaultSet,
            "c",
            "ok",
            json!({"big": big}),
        ))
        .unwrap();
        log.record(&Event::new("a", Action::VaultSet, "c", "ok", json!({})))
            .unwrap();
        let full = std::fs::read(log.path()).unwrap();
        std::fs::write(log.path(), &full[..full.len() - 5]).unwrap();
        log.record(&Event::new("a", Action::VaultDelete, "c", "ok", json!({})))
            .unwrap();
        let r = log.verify().unwrap();
        assert_eq!((r.entries, r.problem), (5, None), "3 kept + repair + new");
    }

    #[test]
    fn an_entry_line_is_its_serialization_and_its_hash_the_canonical_one() {
        for detail in [
            json!({}),
            json!({"a": "x\"y\n", "b": [1, 2.5, null], "é": {"z": true}}),
            json!("plain"),
        ] {
            let (entry, line) = build_entry(
                7,
                GENESIS,
                Event::new("me", Action::VaultSet, "t\u{1}", "ok", detail),
            );
            assert_eq!(line, Value::Object(entry.clone()).to_string());
            assert_eq!(entry["hash"], entry_hash(&entry));
            // The hash is over `prev` and serde_json's own text of the entry without `hash`.
            let mut without = entry.clone();
            without.remove("hash");
            let mut h = Sha256::new();
            h.update(GENESIS.as_bytes());
            h.update(Value::Object(without).to_string().as_bytes());
            assert_eq!(entry["hash"], hex::encode(h.finalize()));
        }
        // Every place the hash can take among other keys.
        for keys in [
            vec![],
            vec!["a"],
            vec!["z"],
            vec!["a", "z"],
            vec!["prev", "a"],
        ] {
            let mut m: Map<String, Value> =
                keys.iter().map(|k| ((*k).to_owned(), json!(1))).collect();
            let (hash, line) = hash_and_line(&m);
            m.insert("hash".into(), hash.clone().into());
            assert_eq!(line, Value::Object(m.clone()).to_string(), "{keys:?}");
            assert_eq!(hash, entry_hash(&m));
        }
    }

    #[test]
    fn an_append_after_another_writer_chains_to_its_entry() {
        let (dir, a) = log_with(3);
        let b = AuditLog::in_dir(dir.path());
        let ev = |t: &str| Event::new("t", Action::VaultSet, t, "ok", json!({}));
        a.record(&ev("a1")).unwrap();
        b.record(&ev("b1")).unwrap();
        // `a` appended last before `b` did: it reads the end back instead of chaining to its own.
        let a2 = a.record(&ev("a2")).unwrap();
        assert_eq!(a2["seq"], 6);
        let r = a.verify().unwrap();
        assert_eq!((r.entries, r.problem), (6, None));
    }

    #[test]
    fn a_log_replaced_by_another_of_the_same_length_is_read_again() {
        let (dir, a) = log_with(2);
        let (other, _) = log_with(2);
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        let replacement = other.path().join("audit.log");
        assert_eq!(
            len(a.path()),
            len(&replacement),
            "the test needs equal lengths"
        );
        // Another file (another inode) in its place, as a restore from a backup would leave it.
        std::fs::copy(&replacement, dir.path().join("new.log")).unwrap();
        std::fs::rename(dir.path().join("new.log"), a.path()).unwrap();
        std::fs::copy(other.path().join("audit.log.anchor"), a.anchor_path()).unwrap();
        a.record(&Event::new("t", Action::VaultSet, "x", "ok", json!({})))
            .unwrap();
        let r = a.verify().unwrap();
        assert_eq!((r.entries, r.problem), (3, None));
    }

    #[test]
    fn concurrent_appenders_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let log = AuditLog::new(&path);
                    for i in 0..25 {
                        log.record(&Event::new(
                            "t",
                            Action::VaultSet,
                            &format!("{t}-{i}"),
                            "ok",
                            json!({}),
                        ))
                        .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let r = AuditLog::new(&path).verify().unwrap();
        assert_eq!((r.entries, r.problem), (200, None));
    }
}
