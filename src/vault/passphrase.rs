//! The optional passphrase on the vault identity.
//!
//! A protected identity is `age-identity.txt.age`: the text `age-keygen` writes, encrypted the
//! way `age -p -a` does it (one scrypt stanza, ASCII armor). It is an "encrypted identity file"
//! to the `age` CLI, so `age -d -i age-identity.txt.age vault.enc` asks for the passphrase and
//! decrypts the vault. Exactly one of `age-identity.txt` and `age-identity.txt.age` is there,
//! except for a moment while `claw vault passphrase set|remove` converts one into the other
//! (both then hold the same key, and the plain one is used).
//!
//! The passphrase comes from `CLAW_VAULT_PASSPHRASE`, else from a prompt on the controlling
//! terminal (only when this process is in the terminal's foreground: a detached run must not
//! stop on a read from the terminal). An unlocked identity is kept for the rest of the process,
//! so a run that reads ten secrets pays for scrypt once.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use age::secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::{AgeFailure, Keys, Secret, VaultError};

/// File name of the passphrase-protected identity inside the data directory.
pub const PROTECTED_IDENTITY_FILE: &str = "age-identity.txt.age";
/// The environment variable a passphrase is read from before any prompt.
pub use crate::config::env::VAULT_PASSPHRASE as PASSPHRASE_ENV;
/// The scrypt work factor (`N = 2^18`) claw encrypts with: the `age` CLI's default. About a
/// second and 256 MiB of memory to unlock on a current machine.
pub const SCRYPT_LOG_N: u8 = 18;
/// The highest work factor claw accepts when unlocking (the `age` CLI's limit for identity
/// files), so that a crafted file cannot make claw work for hours.
pub const SCRYPT_MAX_LOG_N: u8 = 22;

/// Where a vault gets the passphrase of a protected identity.
#[derive(Debug, Clone, Default)]
pub enum Unlock {
    /// `CLAW_VAULT_PASSPHRASE`, else a prompt on the controlling terminal.
    #[default]
    EnvOrTerminal,
    /// `CLAW_VAULT_PASSPHRASE` only (for checks that must never wait on a person).
    EnvOnly,
    /// This passphrase.
    Given(Secret),
}

/// Whether the identity is passphrase-protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// `age-identity.txt`, in clear.
    None,
    /// `age-identity.txt.age`, passphrase-protected.
    Passphrase,
    /// Both: a conversion was interrupted (the plain one is used until it is finished).
    Both,
}

impl Protection {
    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "not passphrase-protected",
            Self::Passphrase => "passphrase-protected (scrypt)",
            Self::Both => {
                "both age-identity.txt and age-identity.txt.age exist (an interrupted \
                 `claw vault passphrase set|remove`: run it again)"
            }
        }
    }
}

/// The passphrase from `CLAW_VAULT_PASSPHRASE`, if set and not empty.
pub fn from_env() -> Option<Secret> {
    crate::config::env::var(PASSPHRASE_ENV).map(Secret::new)
}

/// Whether a prompt can be shown: a controlling terminal whose foreground is this process.
pub fn terminal_available() -> bool {
    let Ok(tty) = std::fs::File::open("/dev/tty") else {
        return false;
    };
    nix::unistd::tcgetpgrp(&tty).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

/// Asks on the controlling terminal, without echo.
pub fn prompt(text: &str) -> Result<Secret, String> {
    if !terminal_available() {
        return Err("there is no terminal to ask on".to_owned());
    }
    rpassword::prompt_password(text)
        .map(Secret::new)
        .map_err(|e| format!("cannot read from the terminal: {e}"))
}

impl Unlock {
    /// The passphrase that unlocks `path`.
    fn obtain(&self, path: &Path) -> Result<Secret, VaultError> {
        let missing = |why: &str| VaultError::NoPassphrase {
            path: path.to_path_buf(),
            why: why.to_owned(),
        };
        match self {
            Self::Given(p) => Ok(p.clone()),
            Self::EnvOnly => from_env().ok_or_else(|| missing("CLAW_VAULT_PASSPHRASE is not set")),
            Self::EnvOrTerminal => match from_env() {
                Some(p) => Ok(p),
                None => {
                    let name = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    prompt(&format!("Passphrase for the vault identity {name}: ")).map_err(|why| {
                        missing(&format!("CLAW_VAULT_PASSPHRASE is not set and {why}"))
                    })
                }
            },
        }
    }
}

/// Identities unlocked by this process: (file, sha256 of its bytes) → keys.
static UNLOCKED: Mutex<Vec<(PathBuf, [u8; 32], Keys)>> = Mutex::new(Vec::new());

/// Unlocks the protected identity at `path` (whose bytes are `bytes`).
pub(super) fn unlock(path: &Path, bytes: &[u8], how: &Unlock) -> Result<Keys, VaultError> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    // A given passphrase is always checked; the others are asked for once per process.
    let cacheable = !matches!(how, Unlock::Given(_));
    if cacheable
        && let Ok(cache) = UNLOCKED.lock()
        && let Some((_, _, keys)) = cache.iter().find(|(p, d, _)| p == path && *d == digest)
    {
        return Ok(keys.clone());
    }
    let passphrase = how.obtain(path)?;
    let text = decrypt(path, bytes, &passphrase)?;
    let mut keys = Keys::parse(&text, path)?;
    keys.passphrase = Some(passphrase);
    if let Some(p) = &keys.passphrase {
        // The passphrase is masked in tracing output like any secret.
        crate::redact::register_global([p.expose()]);
    }
    tracing::debug!(identity = %path.display(), "vault identity unlocked");
    if cacheable && let Ok(mut cache) = UNLOCKED.lock() {
        cache.retain(|(p, _, _)| p != path);
        cache.push((path.to_path_buf(), digest, keys.clone()));
    }
    Ok(keys)
}

/// Records keys this process just wrote to `path` (as `bytes`), so that reading them back does
/// not ask for the passphrase again.
pub(super) fn remember(path: &Path, bytes: &[u8], keys: Keys, how: &Unlock) {
    if matches!(how, Unlock::Given(_)) {
        return;
    }
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if let Ok(mut cache) = UNLOCKED.lock() {
        cache.retain(|(p, _, _)| p != path);
        cache.push((path.to_path_buf(), digest, keys));
    }
}

/// Forgets what this process unlocked from `path` (after it was rewritten or removed).
pub(super) fn forget(path: &Path) {
    if let Ok(mut cache) = UNLOCKED.lock() {
        cache.retain(|(p, _, _)| p != path);
    }
}

/// The identity text inside a protected identity file.
fn decrypt(
    path: &Path,
    bytes: &[u8],
    passphrase: &Secret,
) -> Result<Zeroizing<String>, VaultError> {
    let bad = |why: String| VaultError::BadIdentity {
        path: path.to_path_buf(),
        why,
    };
    let mut identity = age::scrypt::Identity::new(SecretString::from(passphrase.expose()));
    identity.set_max_work_factor(SCRYPT_MAX_LOG_N);
    let plain =
        super::open_age(bytes, &[&identity as &dyn age::Identity]).map_err(|e| match e {
            AgeFailure::NoMatch if is_passphrase_file(bytes) => VaultError::WrongPassphrase {
                path: path.to_path_buf(),
            },
            AgeFailure::NoMatch => bad(
                "it is an age file but not one encrypted with a passphrase (`age -p`)".to_owned(),
            ),
            AgeFailure::Header(why) => bad(format!("{why}; it is not an age file")),
            AgeFailure::Mac => bad("its header was changed (bad MAC)".to_owned()),
            AgeFailure::Payload(why) => bad(format!("{why}; the file is damaged")),
        })?;
    let text = Zeroizing::new(
        String::from_utf8(plain.to_vec())
            .map_err(|_| bad("it decrypts to something that is not text".to_owned()))?,
    );
    Ok(text)
}

/// Whether an age file (armored or not) has a scrypt stanza.
fn is_passphrase_file(bytes: &[u8]) -> bool {
    let mut binary = Zeroizing::new(Vec::new());
    let trimmed = bytes.trim_ascii();
    if age::armor::ArmoredReader::new(trimmed)
        .take(64 * 1024)
        .read_to_end(&mut binary)
        .is_err()
    {
        return false;
    }
    super::is_scrypt(&binary)
}

/// `text` encrypted to `passphrase` as `age -p -a` does, checked by decrypting it back.
pub(super) fn encrypt(
    path: &Path,
    text: &str,
    passphrase: &Secret,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let fail = |why: String| VaultError::Encrypt {
        path: path.to_path_buf(),
        why,
    };
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.expose()));
    recipient.set_work_factor(work_factor());
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| fail(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 2 + 512));
    let armored = age::armor::ArmoredWriter::wrap_output(&mut *out, age::armor::Format::AsciiArmor)
        .map_err(|e| fail(e.to_string()))?;
    let mut w = encryptor
        .wrap_output(armored)
        .map_err(|e| fail(e.to_string()))?;
    w.write_all(text.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    w.finish()
        .and_then(age::armor::ArmoredWriter::finish)
        .map_err(|e| fail(e.to_string()))?;
    // The old identity is removed only after this: prove the new file opens first.
    let back = decrypt(path, &out, passphrase)?;
    if back.as_str() != text {
        return Err(fail(
            "the encrypted identity does not decrypt back to itself".to_owned(),
        ));
    }
    Ok(out)
}

/// The work factor new files get: [`SCRYPT_LOG_N`], unless `CLAW_VAULT_SCRYPT_LOG_N` lowers it
/// (for tests on slow machines; it weakens the protection, and is documented as such).
fn work_factor() -> u8 {
    crate::config::env::var("CLAW_VAULT_SCRYPT_LOG_N")
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|n| (10..=SCRYPT_MAX_LOG_N).contains(n))
        .unwrap_or(SCRYPT_LOG_N)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Vault;

    #[test]
    fn given_passphrases_are_checked_and_an_interrupted_conversion_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let pass = Secret::from("a passphrase");
        let vault = Vault::new(dir.path()).with_unlock(Unlock::Given(pass.clone()));
        vault.init_protected(&pass).unwrap();
        vault.set("K", &Secret::from("v-value")).unwrap();
        assert_eq!(vault.protection(), Some(Protection::Passphrase));

        let wrong = Vault::new(dir.path()).with_unlock(Unlock::Given(Secret::from("nope")));
        assert!(matches!(
            wrong.list(),
            Err(VaultError::WrongPassphrase { .. })
        ));
        let bytes = std::fs::read(vault.protected_identity_path()).unwrap();
        let text = decrypt(&vault.protected_identity_path(), &bytes, &pass).unwrap();

        // A crash between writing one form and removing the other leaves both: the plain one
        // is used, and either command finishes the job.
        std::fs::write(vault.identity_path(), text.as_bytes()).unwrap();
        assert_eq!(vault.protection(), Some(Protection::Both));
        assert_eq!(wrong.get("K").unwrap().unwrap().expose(), "v-value");
        vault.remove_passphrase().unwrap();
        assert_eq!(vault.protection(), Some(Protection::None));
        assert_eq!(
            std::fs::read_to_string(vault.identity_path()).unwrap(),
            *text
        );

        let again = Secret::from("another one");
        vault.set_passphrase(&again).unwrap();
        assert_eq!(vault.protection(), Some(Protection::Passphrase));
        let new = Vault::new(dir.path()).with_unlock(Unlock::Given(again));
        assert_eq!(new.get("K").unwrap().unwrap().expose(), "v-value");
        assert!(matches!(
            vault.list(),
            Err(VaultError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            Vault::new(dir.path())
                .with_unlock(Unlock::Given(Secret::from("")))
                .set_passphrase(&Secret::from("")),
            Err(VaultError::Passphrase(_))
        ));
    }
}
