//! `claw vault init | set | get | list | delete | rotate-key | passphrase | rotation`.

use std::io::{IsTerminal as _, Read as _};

use clap::Subcommand;

use super::output;
use super::{CliError, CliResult, Ctx};

use crate::vault::{InitOutcome, Protection, Secret, Vault, VaultError, mask, passphrase};

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Create the identity (age-identity.txt) and an empty vault (vault.enc). Idempotent.
    Init {
        /// Protect the identity with a passphrase (it is then age-identity.txt.age, as
        /// `age -p` writes it). The passphrase is typed twice on the terminal, or taken from
        /// CLAW_VAULT_PASSPHRASE, or from stdin with --passphrase-stdin.
        #[arg(long)]
        passphrase: bool,
        /// Read the new passphrase from stdin (one line) instead of the terminal.
        #[arg(long, requires = "passphrase")]
        passphrase_stdin: bool,
    },
    /// Store a secret. Without VALUE, it is read from stdin (without echo on a terminal), which
    /// keeps it out of your shell history and the process list.
    Set {
        /// The secret's name.
        key: String,
        /// The value; left out, it is read from stdin or asked for without echo.
        value: Option<String>,
    },
    /// Show a secret, masked unless --reveal.
    Get {
        /// The secret's name.
        key: String,
        /// Print the value in clear.
        #[arg(long)]
        reveal: bool,
    },
    /// The names of the secrets (never their values).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Delete {
        /// The secret's name.
        key: String,
    },
    /// Re-encrypt the vault to a new identity; the old one is kept as a dated backup.
    RotateKey,
    /// The passphrase on the identity: set (or change) it, remove it, or show whether there
    /// is one. Every vault command unlocks a protected identity with CLAW_VAULT_PASSPHRASE,
    /// else asks on the terminal.
    #[command(subcommand)]
    Passphrase(PassphraseCommand),
    /// Credential rotation: which secrets are older than their policy allows.
    #[command(subcommand)]
    Rotation(RotationCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PassphraseCommand {
    /// Protect the identity with a passphrase, or change it. The new passphrase is typed
    /// twice on the terminal, or read from stdin with --passphrase-stdin, or (when the
    /// identity is not protected yet) taken from CLAW_VAULT_PASSPHRASE.
    Set {
        /// Read the new passphrase from stdin (one line).
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Store the identity in clear again (age-identity.txt).
    Remove,
    /// Whether the identity is passphrase-protected.
    Status,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RotationCommand {
    /// Every secret with a policy: its age and whether it is ok, due soon (80%) or expired.
    /// Exit status 1 if any is expired.
    Check {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Policies: `set KEY DAYS` or `list`.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Rotate KEY at least every DAYS days.
    Set {
        /// The secret's name.
        key: String,
        /// Rotate it after this many days.
        days: u32,
    },
    /// The policies.
    List,
}

pub(crate) fn run(ctx: &Ctx, cmd: VaultCommand) -> CliResult {
    let vault = Vault::new(&ctx.dirs.home).acting_as(&crate::config::env::cli_actor());
    match cmd {
        VaultCommand::Init {
            passphrase,
            passphrase_stdin,
        } => {
            ctx.dirs.ensure_home().map_err(|e| {
                CliError::internal(format!("cannot create {}: {e}", ctx.dirs.home.display()))
            })?;
            let outcome = if passphrase && vault.protection().is_none() {
                let new = new_passphrase(passphrase_stdin, true)?;
                vault.init_protected(&new)?
            } else {
                vault.init()?
            };
            let id_path = vault.identity_in_use_path();
            match outcome {
                InitOutcome::Created { public_key } => {
                    println!(
                        "Vault initialized.\n  identity:   {}{}\n  vault:      {}\n  public key: {public_key}",
                        id_path.display(),
                        if passphrase {
                            " (passphrase-protected)"
                        } else {
                            ""
                        },
                        vault.vault_path().display()
                    );
                }
                InitOutcome::AlreadyThere { public_key } => {
                    println!("Vault already initialized (public key {public_key}).");
                    if passphrase && vault.protection() == Some(Protection::None) {
                        eprintln!(
                            "note: its identity is not passphrase-protected; \
                             `claw vault passphrase set` protects it"
                        );
                    }
                }
            }
            Ok(())
        }
        VaultCommand::Passphrase(cmd) => passphrase_cmd(&vault, cmd),
        VaultCommand::Set { key, value } => {
            crate::vault::validate_key(&key)?;
            let value = match value {
                Some(v) => v,
                None => read_secret(&key)?,
            };
            vault.set(&key, &Secret::new(value))?;
            println!("Stored {key}.");
            Ok(())
        }
        VaultCommand::Get { key, reveal } => {
            let found = if reveal {
                vault.reveal(&key)?
            } else {
                vault.get(&key)?
            };
            let Some(secret) = found else {
                // One wording with `vault delete` (and the seed's exit status, 1).
                if vault.protection().is_none() {
                    return Err(crate::vault::VaultError::NotInitialized {
                        dir: ctx.dirs.home.clone(),
                    }
                    .into());
                }
                return Err(crate::vault::VaultError::NoSuchKey(key).into());
            };
            if reveal {
                println!("{}", secret.expose());
            } else {
                println!("{key} = {}", mask(secret.expose()));
            }
            Ok(())
        }
        VaultCommand::List { json } => {
            let keys = vault.list()?;
            if json {
                output::print_json(&serde_json::json!(keys));
            } else if keys.is_empty() {
                println!("The vault is empty.");
            } else {
                for k in keys {
                    println!("{k}");
                }
            }
            Ok(())
        }
        VaultCommand::Delete { key } => {
            vault.delete(&key)?;
            println!("Deleted {key}.");
            Ok(())
        }
        VaultCommand::Rotation(cmd) => rotation(ctx, cmd),
        VaultCommand::RotateKey => {
            let backup = vault.rotate_key()?;
            println!(
                "Rotated: the vault is encrypted to a new identity.\n  old identity kept at {}\n  new public key: {}",
                backup.display(),
                vault.public_key()?
            );
            Ok(())
        }
    }
}

fn passphrase_cmd(vault: &Vault, cmd: PassphraseCommand) -> CliResult {
    let Some(protection) = vault.protection() else {
        return Err(VaultError::NotInitialized {
            dir: vault.dir().to_path_buf(),
        }
        .into());
    };
    match cmd {
        PassphraseCommand::Status => {
            println!(
                "{}: {}",
                vault.identity_in_use_path().display(),
                protection.describe()
            );
            Ok(())
        }
        PassphraseCommand::Set { passphrase_stdin } => {
            // Changing a passphrase: CLAW_VAULT_PASSPHRASE is the old one, so the new one is
            // typed or piped.
            let new = new_passphrase(passphrase_stdin, protection != Protection::Passphrase)?;
            let plain_backups = vault.set_passphrase(&new)?;
            let path = vault.protected_identity_path();
            println!(
                "The vault identity is passphrase-protected: {}\n\
                 Decrypt the vault with the age CLI: age -d -i {} {}",
                path.display(),
                path.display(),
                vault.vault_path().display()
            );
            if !plain_backups.is_empty() {
                eprintln!(
                    "warning: older identities from key rotations are still in clear (they \
                     decrypt only the vault backups of their time):"
                );
                for b in plain_backups {
                    eprintln!("  {}", b.display());
                }
            }
            Ok(())
        }
        PassphraseCommand::Remove => {
            vault.remove_passphrase()?;
            let path = vault.identity_path();
            println!("The vault identity is in clear again: {}", path.display());
            Ok(())
        }
    }
}

/// A new passphrase: from stdin (`--passphrase-stdin`), else from `CLAW_VAULT_PASSPHRASE` when
/// `env_ok`, else typed twice on the terminal.
fn new_passphrase(from_stdin: bool, env_ok: bool) -> Result<Secret, CliError> {
    let value = if from_stdin {
        let mut all = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_to_string(&mut all)
            .map_err(|e| CliError::usage(format!("cannot read the passphrase from stdin: {e}")))?;
        let line = all.lines().next().unwrap_or_default();
        Secret::new(line.trim_end_matches('\r').to_owned())
    } else if let Some(p) = passphrase::from_env().filter(|_| env_ok) {
        p
    } else if passphrase::terminal_available() {
        let first = passphrase::prompt("New passphrase for the vault identity: ")
            .map_err(CliError::internal)?;
        let again = passphrase::prompt("Confirm the passphrase: ").map_err(CliError::internal)?;
        if first.expose() != again.expose() {
            return Err(CliError::usage(
                "the passphrases do not match; nothing was changed",
            ));
        }
        first
    } else {
        return Err(CliError::usage(
            "no new passphrase: type it on a terminal, pipe it with --passphrase-stdin, or \
             (for an identity not protected yet) set CLAW_VAULT_PASSPHRASE",
        ));
    };
    if value.expose().is_empty() {
        return Err(CliError::usage(
            "the passphrase is empty; nothing was changed",
        ));
    }
    Ok(value)
}

/// The value from stdin: on a terminal, one line typed without echo; otherwise all of stdin
/// (one trailing newline removed).
pub(super) fn read_secret(key: &str) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        eprint!("Value for {key}: ");
        let saved = tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
        }
        let mut line = String::new();
        let read = stdin.read_line(&mut line);
        if let Some(t) = &saved {
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        }
        eprintln!();
        read.map_err(|e| CliError::internal(format!("cannot read the value: {e}")))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let mut all = String::new();
    stdin
        .lock()
        .read_to_string(&mut all)
        .map_err(|e| CliError::usage(format!("cannot read the value from stdin: {e}")))?;
    let value = all
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&all);
    if value.is_empty() {
        return Err(CliError::usage(format!(
            "no value for {key}: give it as an argument or on stdin"
        )));
    }
    Ok(value.to_owned())
}

fn rotation(ctx: &Ctx, cmd: RotationCommand) -> CliResult {
    use crate::vault::rotation::{self, State};
    let home = &ctx.dirs.home;
    match cmd {
        RotationCommand::Policy(PolicyCommand::Set { key, days }) => {
            crate::vault::validate_key(&key)?;
            if days == 0 {
                return Err(CliError::usage("DAYS must be at least 1"));
            }
            ctx.dirs.ensure_home().map_err(|e| {
                CliError::internal(format!("cannot create {}: {e}", home.display()))
            })?;
            rotation::set_policy(home, &key, days, &crate::config::env::cli_actor())
                .map_err(CliError::internal)?;
            println!("{key}: rotate at least every {days} days.");
            Ok(())
        }
        RotationCommand::Policy(PolicyCommand::List) => {
            let all = rotation::load(home).map_err(CliError::usage)?;
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|p| {
                    vec![
                        p.key.clone(),
                        p.max_age_days.to_string(),
                        p.last_rotated
                            .map_or_else(|| "unknown".to_owned(), crate::time::local),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["KEY", "MAX DAYS", "LAST ROTATED"], &rows)
            );
            Ok(())
        }
        RotationCommand::Check { json } => {
            let all = rotation::load(home).map_err(CliError::usage)?;
            let now = chrono::Utc::now();
            let checked: Vec<(&rotation::Policy, Option<i64>, State)> = all
                .iter()
                .map(|p| {
                    let (age, state) = p.check(now);
                    (p, age, state)
                })
                .collect();
            if json {
                output::print_json(&serde_json::Value::Array(
                    checked
                        .iter()
                        .map(|(p, age, state)| {
                            serde_json::json!({
                                "key": p.key, "max_age_days": p.max_age_days,
                                "age_days": age, "state": state.as_str(),
                            })
                        })
                        .collect(),
                ));
            } else if checked.is_empty() {
                println!("No rotation policies (`claw vault rotation policy set KEY DAYS`).");
            } else {
                let rows: Vec<Vec<String>> = checked
                    .iter()
                    .map(|(p, age, state)| {
                        vec![
                            p.key.clone(),
                            age.map_or_else(|| "unknown".to_owned(), |d| format!("{d} days")),
                            format!("{} days", p.max_age_days),
                            state.as_str().to_owned(),
                        ]
                    })
                    .collect();
                print!("{}", output::table(&["KEY", "AGE", "MAX", "STATE"], &rows));
            }
            if checked.iter().any(|(_, _, s)| *s == State::Expired) {
                Err(CliError::failed())
            } else {
                Ok(())
            }
        }
    }
}
