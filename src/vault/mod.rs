//! The secrets vault: `vault.enc`, an age-encrypted JSON object of string values, and
//! `age-identity.txt`, the X25519 identity it is encrypted to, both in the data directory. The
//! identity may instead be passphrase-protected, as `age-identity.txt.age` ([`passphrase`]).
//!
//! Compatible with the Python seed (and the `age`/`age-keygen` CLIs): the identity is the file
//! `age-keygen` writes, the vault is binary age output (armored input is read too). All
//! crypto is done in-process by the `age` crate.
//!
//! Every change is a read-modify-write under an exclusive `flock` on `vault.lock`, written to a
//! `.vault-<random>.tmp` file (0600) that is fsynced and renamed over its target, then the
//! directory fsynced: a crash leaves the old or the new file, never a mix. Reads take no lock.
//! The mechanism is [`crate::fsutil`]'s; `file.rs` fixes the vault's modes, names and errors.

mod file;
pub mod passphrase;
pub mod rotation;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use age::secrecy::ExposeSecret;
use age::x25519;
use zeroize::Zeroizing;

use file::Replace;
pub use passphrase::{PROTECTED_IDENTITY_FILE, Protection, Unlock};

/// File name of the encrypted vault inside the data directory.
pub const VAULT_FILE: &str = "vault.enc";
/// File name of the age identity inside the data directory.
pub const IDENTITY_FILE: &str = "age-identity.txt";
/// File name of the lock file that serialises writers.
pub const LOCK_FILE: &str = "vault.lock";

pub use crate::secret::Secret;

/// The seed's masking for display: the first 2 and last 2 characters with `****` between
/// (`sk****23`); values of 4 characters or fewer are all `****`.
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n <= 4 {
        return "****".to_owned();
    }
    let head: String = value.chars().take(2).collect();
    let tail: String = value.chars().skip(n - 2).collect();
    // As the seed: one `*` for each hidden character.
    format!("{head}{}{tail}", "*".repeat(n - 4))
}

/// Checks a secret's name: non-empty, only `A-Z a-z 0-9 _ . : -`.
pub fn validate_key(key: &str) -> Result<(), VaultError> {
    let why = if key.is_empty() {
        "it is empty"
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        "only letters, digits and `_ . : -` are allowed"
    } else {
        return Ok(());
    };
    Err(VaultError::InvalidKey {
        key: key.to_owned(),
        why,
    })
}

/// Everything that can go wrong with the vault; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Neither an identity nor a vault exists in the data directory.
    #[error("no vault in {}: run `claw vault init` to create one", dir.display())]
    NotInitialized { dir: PathBuf },
    /// The vault exists but the identity that decrypts it does not.
    #[error(
        "the vault identity {} is missing, so the vault cannot be decrypted: restore it \
         (or an `age-identity.txt.*.bak` backup renamed to it) from where you keep it",
        path.display()
    )]
    NoIdentity { path: PathBuf },
    /// The identity file cannot be used.
    #[error(
        "{} is not a usable age identity ({why}): it must hold an `AGE-SECRET-KEY-1…` line \
         as written by `age-keygen`",
        path.display()
    )]
    BadIdentity { path: PathBuf, why: String },
    /// The vault file could not be decrypted.
    #[error("cannot decrypt {}: {why}", path.display())]
    Decrypt { path: PathBuf, why: String },
    /// The vault decrypted but is not a JSON object of strings.
    #[error(
        "{} decrypted but is not a vault ({why}); restore it from a backup",
        path.display()
    )]
    Corrupt { path: PathBuf, why: String },
    /// Encryption failed (should not happen with X25519 recipients).
    #[error("cannot encrypt {}: {why}", path.display())]
    Encrypt { path: PathBuf, why: String },
    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No secret of that name.
    #[error("no secret named `{0}` in the vault (see `claw vault list`)")]
    NoSuchKey(String),
    /// A secret's name is not allowed.
    #[error("invalid secret name `{key}`: {why} (e.g. `ssh:host:password`)")]
    InvalidKey { key: String, why: &'static str },
    /// `init` found a vault but no identity: a new identity could never decrypt it.
    #[error(
        "{} exists but its identity `age-identity.txt` does not; refusing to create a new \
         identity that could not read it: restore the identity (or a `.bak` of it), or move \
         the old vault away first",
        path.display()
    )]
    AlreadyInitialized { path: PathBuf },
    /// The passphrase does not open the protected identity.
    #[error(
        "wrong passphrase for {} (from CLAW_VAULT_PASSPHRASE if it is set, else as typed); \
         nothing was changed",
        path.display()
    )]
    WrongPassphrase { path: PathBuf },
    /// The identity is protected and no passphrase could be had.
    #[error(
        "the vault identity {} is passphrase-protected and no passphrase was given ({why}): \
         set CLAW_VAULT_PASSPHRASE or run the command on a terminal",
        path.display()
    )]
    NoPassphrase { path: PathBuf, why: String },
    /// `passphrase set|remove` has nothing to do, or was asked the impossible.
    #[error("{0}")]
    Passphrase(String),
    /// A change or a reveal whose audit entry could not be written (a change is made, a reveal
    /// is not).
    #[error("the audit log cannot be written: {source}")]
    Audit {
        #[source]
        source: crate::audit::AuditError,
    },
    /// Another writer held the lock for too long.
    #[error(
        "another process has held the vault lock {} for over {}s; try again when it is done",
        path.display(),
        waited.as_secs()
    )]
    Locked { path: PathBuf, waited: Duration },
}

impl crate::error::ExitStatus for VaultError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::NoSuchKey(_) => crate::error::FAILED,
            Self::InvalidKey { .. } | Self::Passphrase(_) => crate::error::INVALID,
            _ => crate::error::INTERNAL,
        }
    }
}

/// What `Vault::init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new identity (and an empty vault) was created.
    Created { public_key: String },
    /// An identity was already there and was kept (a missing vault file was created empty).
    AlreadyThere { public_key: String },
}

/// The identities of `age-identity.txt`: the first one's public key is the vault's.
#[derive(Clone)]
struct Keys {
    identities: Vec<x25519::Identity>,
    /// The identity file's text (in clear), as read.
    text: Zeroizing<String>,
    /// The passphrase that unlocked it, if it was protected.
    passphrase: Option<Secret>,
}

impl Keys {
    fn parse(text: &str, path: &Path) -> Result<Self, VaultError> {
        let bad = |why: String| VaultError::BadIdentity {
            path: path.to_path_buf(),
            why,
        };
        let mut identities = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !line.starts_with("AGE-SECRET-KEY-1") {
                return Err(bad(format!(
                    "line {} is not an X25519 secret key (`AGE-SECRET-KEY-1…`)",
                    n + 1
                )));
            }
            let id = x25519::Identity::from_str(line)
                .map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
            identities.push(id);
        }
        if identities.is_empty() {
            return Err(bad("it holds no secret key".to_owned()));
        }
        Ok(Self {
            identities,
            text: Zeroizing::new(text.to_owned()),
            passphrase: None,
        })
    }

    fn public_key(&self) -> String {
        self.identities
            .first()
            .map(|id| id.to_public().to_string())
            .unwrap_or_default()
    }

    fn recipients(&self) -> Vec<x25519::Recipient> {
        self.identities
            .iter()
            .map(x25519::Identity::to_public)
            .collect()
    }
}

/// The text `age-keygen` writes for an identity.
fn identity_file_text(id: &x25519::Identity) -> Zeroizing<String> {
    let created = crate::time::rfc3339_secs(chrono::Utc::now());
    Zeroizing::new(format!(
        "# created: {created}\n# public key: {}\n{}\n",
        id.to_public(),
        id.to_string().expose_secret()
    ))
}

/// The vault in a data directory.
#[derive(Debug, Clone)]
pub struct Vault {
    dir: PathBuf,
    lock_timeout: Duration,
    unlock: Unlock,
    /// Who acts: set, every change and every reveal is recorded in the audit log (and fails
    /// when its entry cannot be written).
    actor: Option<String>,
}

impl Vault {
    /// The vault in `dir` (nothing is read until used).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            lock_timeout: file::LOCK_TIMEOUT,
            unlock: Unlock::default(),
            actor: None,
        }
    }

    /// The same vault, with `actor` (`cli:alice`, `dashboard:admin`, …) recorded in the audit
    /// log for every change and every reveal made through it. The CLI, the dashboard and every
    /// front end act through such a vault, so each gets the same entries.
    #[must_use]
    pub fn acting_as(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_owned());
        self
    }

    /// Records `action` on `target` when someone acts through this vault; a failure to write
    /// the entry is an error (the vault's actions fail closed on their audit trail).
    fn audit(&self, action: crate::audit::Action, target: &str) -> Result<(), VaultError> {
        let Some(actor) = &self.actor else {
            return Ok(());
        };
        crate::audit::AuditLog::in_dir(&self.dir)
            .record(&crate::audit::Event::new(
                actor,
                action,
                target,
                "ok",
                serde_json::json!({}),
            ))
            .map(drop)
            .map_err(|source| VaultError::Audit { source })
    }

    /// A secret to be shown in clear: the reveal is recorded before the value is returned, and
    /// not returned when it cannot be.
    pub fn reveal(&self, key: &str) -> Result<Option<Secret>, VaultError> {
        let Some(secret) = self.get(key)? else {
            return Ok(None);
        };
        self.audit(crate::audit::Action::VaultGetReveal, key)?;
        Ok(Some(secret))
    }

    /// Where the passphrase of a protected identity comes from (default: the environment,
    /// else a prompt on the terminal).
    pub fn with_unlock(mut self, unlock: Unlock) -> Self {
        self.unlock = unlock;
        self
    }

    /// How long writers wait for another writer's lock before failing with `Locked`.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `vault.enc`.
    pub fn vault_path(&self) -> PathBuf {
        self.dir.join(VAULT_FILE)
    }

    /// Path of `age-identity.txt`.
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join(IDENTITY_FILE)
    }

    /// Path of `age-identity.txt.age` (the passphrase-protected identity).
    pub fn protected_identity_path(&self) -> PathBuf {
        self.dir.join(PROTECTED_IDENTITY_FILE)
    }

    /// Whether the identity is passphrase-protected; `None` if there is no identity.
    pub fn protection(&self) -> Option<Protection> {
        match (
            self.identity_path().exists(),
            self.protected_identity_path().exists(),
        ) {
            (true, true) => Some(Protection::Both),
            (true, false) => Some(Protection::None),
            (false, true) => Some(Protection::Passphrase),
            (false, false) => None,
        }
    }

    /// The identity file in use: the plain one if it is there, else the protected one.
    pub fn identity_in_use_path(&self) -> PathBuf {
        let plain = self.identity_path();
        let protected = self.protected_identity_path();
        if !plain.exists() && protected.exists() {
            protected
        } else {
            plain
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// Creates the identity (0600) and an empty vault. Idempotent: an existing identity is
    /// kept (`AlreadyThere`), and is never overwritten.
    pub fn init(&self) -> Result<InitOutcome, VaultError> {
        self.init_with(None)
    }

    /// [`Vault::init`], with the new identity protected by `passphrase` (as
    /// `age-identity.txt.age`). An existing identity is kept as it is, protected or not.
    pub fn init_protected(&self, passphrase: &Secret) -> Result<InitOutcome, VaultError> {
        self.init_with(Some(passphrase))
    }

    fn init_with(&self, passphrase: Option<&Secret>) -> Result<InitOutcome, VaultError> {
        create_private_dir(&self.dir)?;
        let _lock = self.lock()?;
        let vault_path = self.vault_path();
        if self.protection().is_some() {
            let keys = self.load_keys()?;
            if !vault_path.exists() {
                self.write_vault(&keys, &BTreeMap::new())?;
            }
            return Ok(InitOutcome::AlreadyThere {
                public_key: keys.public_key(),
            });
        }
        if vault_path.exists() {
            return Err(VaultError::AlreadyInitialized { path: vault_path });
        }
        let id = x25519::Identity::generate();
        let text = identity_file_text(&id);
        let placed = self.write_identity(&text, passphrase, Replace::IfAbsent)?;
        let keys = match passphrase {
            // Just written and checked: no need to pay for scrypt again.
            Some(p) if placed => Keys {
                passphrase: Some(p.clone()),
                ..Keys::parse(&text, &self.protected_identity_path())?
            },
            _ => self.load_keys()?,
        };
        if !vault_path.exists() {
            self.write_vault(&keys, &BTreeMap::new())?;
        }
        let public_key = keys.public_key();
        if placed {
            self.audit(
                crate::audit::Action::VaultInit,
                &self.identity_in_use_path().display().to_string(),
            )?;
        }
        Ok(if placed {
            InitOutcome::Created { public_key }
        } else {
            InitOutcome::AlreadyThere { public_key }
        })
    }

    /// The vault's public key (`age1…`), from the identity file.
    pub fn public_key(&self) -> Result<String, VaultError> {
        Ok(self.load_keys()?.public_key())
    }

    /// One secret, or `None` if the vault has no such name.
    pub fn get(&self, key: &str) -> Result<Option<Secret>, VaultError> {
        validate_key(key)?;
        Ok(self.all()?.remove(key))
    }

    /// The names of all secrets, sorted; never their values.
    pub fn list(&self) -> Result<Vec<String>, VaultError> {
        Ok(self.all()?.into_keys().collect())
    }

    /// Every secret. A missing vault file is an empty vault.
    pub fn all(&self) -> Result<BTreeMap<String, Secret>, VaultError> {
        let path = self.vault_path();
        let ciphertext = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let keys = self.load_keys()?;
        let map = decrypt_vault(&keys, &ciphertext, &path)?;
        tracing::debug!(vault = %path.display(), secrets = map.len(), "vault read");
        Ok(map)
    }

    /// Adds or replaces a secret.
    pub fn set(&self, key: &str, value: &Secret) -> Result<(), VaultError> {
        validate_key(key)?;
        self.modify(|map| {
            map.insert(key.to_owned(), value.clone());
            Ok(())
        })?;
        // A new value is a rotation, for the key's policy (if it has one).
        if let Err(e) = rotation::mark_rotated(&self.dir, key, chrono::Utc::now()) {
            tracing::warn!(key, "{e}");
        }
        self.audit(crate::audit::Action::VaultSet, key)
    }

    /// Removes a secret; `NoSuchKey` if there is none of that name.
    pub fn delete(&self, key: &str) -> Result<(), VaultError> {
        validate_key(key)?;
        self.modify(|map| match map.remove(key) {
            Some(_) => Ok(()),
            None => Err(VaultError::NoSuchKey(key.to_owned())),
        })?;
        self.audit(crate::audit::Action::VaultDelete, key)
    }

    /// Makes a new identity and re-encrypts the vault to it. The old identity is kept as
    /// `age-identity.txt.<YYYYmmddTHHMMSSZ>.bak` (0600), whose path is returned.
    ///
    /// Crash-safe: the vault is first encrypted to both keys, then the identity replaced,
    /// then the vault encrypted to the new key alone, so whatever identity file is in place
    /// always decrypts the vault.
    pub fn rotate_key(&self) -> Result<PathBuf, VaultError> {
        let _lock = self.lock()?;
        let old = self.load_keys()?;
        let map = self.read_locked(&old)?;
        // The identity keeps its form: a protected one stays protected, by the same passphrase.
        let id_path = self.identity_in_use_path();
        let id_name = id_path.file_name().map_or_else(
            || IDENTITY_FILE.to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );

        let stamp = crate::time::compact(chrono::Utc::now());
        let mut n = 1;
        let backup = loop {
            let name = if n == 1 {
                format!("{id_name}.{stamp}.bak")
            } else {
                format!("{id_name}.{stamp}-{n}.bak")
            };
            let candidate = self.dir.join(name);
            if file::copy_new(&id_path, &candidate)? {
                break candidate;
            }
            n += 1;
        };

        let new_id = x25519::Identity::generate();
        let both = Keys {
            identities: old
                .identities
                .iter()
                .cloned()
                .chain(std::iter::once(new_id.clone()))
                .collect(),
            ..old.clone()
        };
        self.write_vault(&both, &map)?;
        let text = identity_file_text(&new_id);
        let passphrase = if id_path == self.identity_path() {
            None
        } else {
            old.passphrase.as_ref()
        };
        self.write_identity(&text, passphrase, Replace::Always)?;
        let new = Keys {
            identities: vec![new_id],
            ..old
        };
        self.write_vault(&new, &map)?;
        self.audit(
            crate::audit::Action::VaultRotateKey,
            &self.identity_path().display().to_string(),
        )?;
        Ok(backup)
    }

    /// Protects the identity with `new` (or changes its passphrase): writes
    /// `age-identity.txt.age` (checked by decrypting it back) before removing
    /// `age-identity.txt`, under the vault lock, so an identity is on disk at every moment.
    /// Returns the plain backups of earlier rotations (`age-identity.txt.*.bak`), which it
    /// does not touch.
    pub fn set_passphrase(&self, new: &Secret) -> Result<Vec<PathBuf>, VaultError> {
        if new.expose().is_empty() {
            return Err(VaultError::Passphrase("the passphrase is empty".to_owned()));
        }
        let _lock = self.lock()?;
        let keys = self.load_keys()?;
        self.write_identity(&keys.text, Some(new), Replace::Always)?;
        self.remove_identity_file(&self.identity_path())?;
        self.audit(
            crate::audit::Action::VaultPassphraseSet,
            &self.protected_identity_path().display().to_string(),
        )?;
        Ok(self.plain_backups())
    }

    /// Removes the passphrase: writes `age-identity.txt` in clear, then removes
    /// `age-identity.txt.age`, under the vault lock.
    pub fn remove_passphrase(&self) -> Result<(), VaultError> {
        let _lock = self.lock()?;
        let protected = self.protected_identity_path();
        if self.protection() == Some(Protection::None) {
            return Err(VaultError::Passphrase(format!(
                "the vault identity {} is not passphrase-protected",
                self.identity_path().display()
            )));
        }
        let keys = self.load_keys()?;
        self.write_identity(&keys.text, None, Replace::Always)?;
        self.remove_identity_file(&protected)?;
        passphrase::forget(&protected);
        self.audit(
            crate::audit::Action::VaultPassphraseRemove,
            &self.identity_path().display().to_string(),
        )
    }

    /// The backups of plain identities left by earlier rotations.
    fn plain_backups(&self) -> Vec<PathBuf> {
        let prefix = format!("{IDENTITY_FILE}.");
        let mut out: Vec<PathBuf> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".bak") && !name.contains(".age.")
            })
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Writes the identity text: in clear to `age-identity.txt`, or with a passphrase to
    /// `age-identity.txt.age`. Returns whether it was placed (see [`Replace`]).
    fn write_identity(
        &self,
        text: &str,
        passphrase: Option<&Secret>,
        how: Replace,
    ) -> Result<bool, VaultError> {
        match passphrase {
            None => {
                let path = self.identity_path();
                file::write_atomic(&path, how, |f| f.write_all(text.as_bytes()))
            }
            Some(p) => {
                let path = self.protected_identity_path();
                let bytes = passphrase::encrypt(&path, text, p)?;
                let placed = file::write_atomic(&path, how, |f| f.write_all(&bytes))?;
                if placed {
                    let mut keys = Keys::parse(text, &path)?;
                    keys.passphrase = Some(p.clone());
                    passphrase::remember(&path, &bytes, keys, &self.unlock);
                }
                Ok(placed)
            }
        }
    }

    fn remove_identity_file(&self, path: &Path) -> Result<(), VaultError> {
        match fs::remove_file(path) {
            Ok(()) => file::sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(path)(e)),
        }
    }

    /// Read-modify-write under the lock.
    fn modify<F>(&self, change: F) -> Result<(), VaultError>
    where
        F: FnOnce(&mut BTreeMap<String, Secret>) -> Result<(), VaultError>,
    {
        let _lock = self.lock()?;
        let keys = self.load_keys()?;
        let mut map = self.read_locked(&keys)?;
        change(&mut map)?;
        self.write_vault(&keys, &map)
    }

    fn read_locked(&self, keys: &Keys) -> Result<BTreeMap<String, Secret>, VaultError> {
        let path = self.vault_path();
        match fs::read(&path) {
            Ok(bytes) => decrypt_vault(keys, &bytes, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Takes the writers' lock and clears temp files a killed writer left.
    fn lock(&self) -> Result<crate::fsutil::FileLock, VaultError> {
        if !self.dir.is_dir() {
            return Err(VaultError::NotInitialized {
                dir: self.dir.clone(),
            });
        }
        let lock = file::lock(&self.lock_path(), self.lock_timeout)?;
        file::remove_stale_temps(&self.dir);
        Ok(lock)
    }

    fn load_keys(&self) -> Result<Keys, VaultError> {
        let path = self.identity_path();
        let protected = self.protected_identity_path();
        if !path.exists() && protected.exists() {
            let bytes = Zeroizing::new(fs::read(&protected).map_err(io_at(&protected))?);
            return passphrase::unlock(&protected, &bytes, &self.unlock);
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if self.vault_path().exists() {
                    VaultError::NoIdentity { path }
                } else {
                    VaultError::NotInitialized {
                        dir: self.dir.clone(),
                    }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(VaultError::BadIdentity {
                    path,
                    why: "it is not UTF-8 text".to_owned(),
                });
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        Keys::parse(&text, &path)
    }

    fn write_vault(&self, keys: &Keys, map: &BTreeMap<String, Secret>) -> Result<(), VaultError> {
        let path = self.vault_path();
        let plaintext = encode_map(map);
        let recipients = keys.recipients();
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| VaultError::Encrypt {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
        file::write_atomic(&path, Replace::Always, |f| {
            let mut w = encryptor.wrap_output(io::BufWriter::new(f))?;
            w.write_all(&plaintext)?;
            w.finish()?.flush()
        })?;
        Ok(())
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), VaultError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))
}

/// The vault's JSON, in a buffer that is zeroized when dropped.
fn encode_map(map: &BTreeMap<String, Secret>) -> Zeroizing<Vec<u8>> {
    struct Exposed<'a>(&'a BTreeMap<String, Secret>);
    impl serde::Serialize for Exposed<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v.expose())))
        }
    }
    // Room for escapes up front, so the buffer is not reallocated (leaving copies behind).
    let estimate: usize = map
        .iter()
        .map(|(k, v)| 6 * (k.len() + v.expose().len()) + 8)
        .sum();
    let mut buf = Zeroizing::new(Vec::with_capacity(estimate + 2));
    // Serialising strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &Exposed(map));
    buf
}

/// Where decrypting an age file failed.
#[derive(Debug)]
pub enum AgeFailure {
    /// The header is not valid age (or the ASCII armor around it is broken).
    Header(String),
    /// None of the identities opens it.
    NoMatch,
    /// The header's MAC is wrong (the header was changed).
    Mac,
    /// The header is fine but the encrypted payload is damaged or truncated.
    Payload(String),
}

/// Decrypts an age file (binary or armored) with any of `identities`. The one decryption path of
/// claw: the vault uses it, and the C2SP test vectors check it.
pub fn open_age(
    ciphertext: &[u8],
    identities: &[&dyn age::Identity],
) -> Result<Zeroizing<Vec<u8>>, AgeFailure> {
    // Armored files may have white space around them (the spec allows it; the crate does not).
    const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
    let trimmed = ciphertext.trim_ascii();
    let input = if trimmed.starts_with(ARMOR_BEGIN) {
        trimmed
    } else {
        ciphertext
    };
    // Decode the armor (if any) first, so that the header can be checked as binary.
    let mut binary = Zeroizing::new(Vec::with_capacity(input.len()));
    age::armor::ArmoredReader::new(input)
        .read_to_end(&mut binary)
        .map_err(|e| AgeFailure::Header(format!("bad armor: {e}")))?;
    check_header(&binary).map_err(AgeFailure::Header)?;
    let decryptor =
        age::Decryptor::new_buffered(&binary[..]).map_err(|e| AgeFailure::Header(e.to_string()))?;
    let mut plain = decryptor
        .decrypt(identities.iter().copied())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => AgeFailure::NoMatch,
            // A passphrase that does not open its scrypt stanza is no match either.
            age::DecryptError::DecryptionFailed if is_scrypt(&binary) => AgeFailure::NoMatch,
            age::DecryptError::InvalidMac => AgeFailure::Mac,
            other => AgeFailure::Header(other.to_string()),
        })?;
    let mut buf = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    plain
        .read_to_end(&mut buf)
        .map_err(|e| AgeFailure::Payload(e.to_string()))?;
    Ok(buf)
}

/// The header grammar of age v1, strictly: the version line, stanzas (`-> type args` and a body
/// of base64 lines of 64 columns ending with a shorter line, possibly empty), then `--- mac`.
/// The crate accepts a stanza without its final short line; the spec does not.
fn check_header(file: &[u8]) -> Result<(), String> {
    let mut lines = file.split(|&b| b == b'\n');
    if lines.next() != Some(b"age-encryption.org/v1".as_slice()) {
        // Not v1: let the crate say what it is.
        return Ok(());
    }
    let mut in_body = false;
    for line in lines {
        if line.starts_with(b"---") {
            return if in_body {
                Err("a stanza's body does not end with a short line".to_owned())
            } else {
                Ok(())
            };
        }
        if line.starts_with(b"-> ") {
            if in_body {
                return Err("a stanza's body does not end with a short line".to_owned());
            }
            in_body = true;
            continue;
        }
        if !in_body {
            return Err("a header line is outside any stanza".to_owned());
        }
        match line.len() {
            64 => {}
            n if n < 64 => in_body = false,
            _ => return Err("a stanza body line is longer than 64 columns".to_owned()),
        }
    }
    Err("the header does not end with a `---` line".to_owned())
}

fn is_scrypt(file: &[u8]) -> bool {
    file.split(|&b| b == b'\n')
        .take_while(|l| !l.starts_with(b"---"))
        .any(|l| l.starts_with(b"-> scrypt "))
}

fn decrypt_vault(
    keys: &Keys,
    ciphertext: &[u8],
    path: &Path,
) -> Result<BTreeMap<String, Secret>, VaultError> {
    let fail = |why: String| VaultError::Decrypt {
        path: path.to_path_buf(),
        why,
    };
    let ids: Vec<&dyn age::Identity> = keys
        .identities
        .iter()
        .map(|i| i as &dyn age::Identity)
        .collect();
    let buf = open_age(ciphertext, &ids).map_err(|e| match e {
        AgeFailure::Header(why) => fail(format!(
            "{why} (it is not an age file: restore it from a backup)"
        )),
        AgeFailure::NoMatch => fail(format!(
            "it is not encrypted to the identity in {} (after a key rotation, the \
             previous identity is in an `age-identity.txt.*.bak` file)",
            path.with_file_name(IDENTITY_FILE).display()
        )),
        AgeFailure::Mac => {
            fail("its header was changed (bad MAC); restore it from a backup".into())
        }
        AgeFailure::Payload(why) => fail(format!(
            "{why}; the file is damaged: restore it from a backup"
        )),
    })?;
    serde_json::from_slice::<BTreeMap<String, Secret>>(&buf).map_err(|e| {
        // serde_json's message may quote the content: report only where it went wrong.
        VaultError::Corrupt {
            path: path.to_path_buf(),
            why: format!(
                "not a JSON object of string values: {:?} error at line {}, column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        }
    })
}

/// Every setting (`config::resolve`), with the vault's layer read from the vault in `home`
/// (values stored under a setting's name; nothing when there is no vault yet).
pub fn settings(
    root: &Path,
    home: &Path,
    flags: BTreeMap<String, String>,
) -> (crate::config::resolve::Layers, Vec<String>) {
    let v = Vault::new(home);
    let layer = if v.vault_path().exists() {
        v.all()
            .map(|all| {
                crate::config::resolve::DEFS
                    .iter()
                    .filter_map(|d| {
                        all.get(d.name)
                            .map(|s| (d.name.to_owned(), s.expose().to_owned()))
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    } else {
        Ok(BTreeMap::new())
    };
    crate::config::resolve::gather(root, flags, layer)
}
