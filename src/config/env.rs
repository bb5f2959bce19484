//! The process environment: the one place claw reads it (clippy's `disallowed-methods` keeps
//! `std::env::var` and friends out of every other module).

use std::ffi::OsString;

/// The variable that unlocks a passphrase-protected vault identity. It is read by the vault and
/// kept from every step's environment (a step gets the secrets it names, never the key to all).
pub const VAULT_PASSPHRASE: &str = "CLAW_VAULT_PASSPHRASE";

/// claw's environment as `${{ env.* }}` and a step's process see it: its own, less the vault
/// passphrase.
pub fn process_env() -> Vec<(OsString, OsString)> {
    let mut all = inherited_all();
    all.retain(|(k, _)| k != VAULT_PASSPHRASE);
    all
}

/// claw's whole environment as a process it starts inherits it, the vault passphrase included
/// (a step's command removes it: `steps::shell`; `claw skill run` as a child needs it).
#[allow(clippy::disallowed_methods)]
pub fn inherited_all() -> Vec<(OsString, OsString)> {
    std::env::vars_os().collect()
}

/// One variable of claw's environment as a process it starts inherits it (set but empty is
/// kept, unlike [`var`]).
#[allow(clippy::disallowed_methods)]
pub fn inherited(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// One environment variable; unset and empty are the same.
#[allow(clippy::disallowed_methods)]
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// One environment variable as the OS holds it (paths need not be UTF-8); unset and empty are
/// the same.
#[allow(clippy::disallowed_methods)]
pub fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The local user's name: `$USER`, else the password database's name for this uid, else the uid.
pub fn local_user() -> String {
    if let Some(u) = var("USER") {
        return u;
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// The audit actor of a command typed on this machine: `cli:<user>`.
pub fn cli_actor() -> String {
    format!("cli:{}", local_user())
}
