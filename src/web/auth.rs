//! The dashboard's credentials: argon2id password hashes, the weak-password rule, random tokens
//! (sessions, CSRF, API tokens) kept in the store only as their SHA-256, and the login throttle.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::Digest as _;

/// A session ends after this long without a request.
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// A session ends this long after the login, however busy.
pub const ABSOLUTE_MS: i64 = 12 * 3600 * 1000;
/// Failed logins allowed per client and per user name within [`THROTTLE_WINDOW`]; the next
/// attempt is refused unchecked.
pub const THROTTLE_FAILURES: usize = 5;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 12;

/// Passwords refused whatever their length (the start of the usual breach lists, and words
/// people pad to reach a length).
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "qwerty",
    "qwertyuiop",
    "azerty",
    "abc123",
    "letmein",
    "welcome",
    "admin",
    "administrator",
    "root",
    "changeme",
    "iloveyou",
    "monkey",
    "dragon",
    "master",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "trustno1",
    "secret",
    "default",
    "dashboard",
    "claw",
    "homelab",
    "correcthorsebatterystaple",
    "111111",
    "000000",
    "123123",
    "654321",
    "qazwsx",
    "zaq12wsx",
];

/// Why a password is refused, or `Ok` when it may be used.
pub fn check_strength(user: &str, password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(format!(
            "the password is too short ({chars} characters; at least {MIN_PASSWORD})"
        ));
    }
    let lower = password.to_lowercase();
    let core: String = lower
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect::<String>();
    if COMMON.iter().any(|c| {
        lower == *c
            || core == *c
            || lower.starts_with(c)
                && lower[c.len()..]
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || ch.is_ascii_punctuation())
    }) {
        return Err("the password is a common one; choose another".to_owned());
    }
    if user.chars().count() >= 3 && lower.contains(&user.to_lowercase()) {
        return Err("the password contains the user name".to_owned());
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 6 {
        return Err(
            "the password repeats too few characters (at least 6 different ones)".to_owned(),
        );
    }
    Ok(())
}

/// A user name: letters, digits, `.`, `_`, `-`, `@`, 1 to 64 characters.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user name `{name}`: use 1 to 64 letters, digits, `.`, `_`, `-` or `@`"
        ))
    }
}

/// The argon2id PHC string of `password` (a fresh random salt, the crate's default cost).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness from the system: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// 32 random bytes as hex: a session id, a CSRF token or an API token.
pub fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the system: {e}"))?;
    Ok(hex::encode(bytes))
}

/// What the store keeps of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Equal in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Failed logins per client address and per user name, in memory (a restart forgets them).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: HashMap<String, VecDeque<Instant>>,
}

impl Throttle {
    fn prune(&mut self, now: Instant) {
        for q in self.failures.values_mut() {
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= THROTTLE_WINDOW)
            {
                q.pop_front();
            }
        }
        self.failures.retain(|_, q| !q.is_empty());
    }

    /// Whether the client or the user has used up their failures.
    pub fn blocked(&mut self, client: &str, user: &str, now: Instant) -> bool {
        self.prune(now);
        [format!("client:{client}"), format!("user:{user}")]
            .iter()
            .any(|k| {
                self.failures
                    .get(k)
                    .is_some_and(|q| q.len() >= THROTTLE_FAILURES)
            })
    }

    /// Counts a failure against both.
    pub fn fail(&mut self, client: &str, user: &str, now: Instant) {
        for k in [format!("client:{client}"), format!("user:{user}")] {
            self.failures.entry(k).or_default().push_back(now);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_strength("alice", "short").is_err());
        assert!(check_strength("alice", "password1234").is_err());
        assert!(check_strength("alice", "Password!!!!").is_err());
        assert!(check_strength("alice", "alice-is-my-name").is_err());
        assert!(check_strength("alice", "aaaaaaaaaaaaaaaa").is_err());
        assert!(check_strength("alice", "tulip-orbit-canyon-7").is_ok());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("tulip-orbit-canyon-7").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "tulip-orbit-canyon-7"));
        assert!(!verify_password(&h, "tulip-orbit-canyon-8"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn the_sixth_failure_in_a_minute_is_throttled() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..THROTTLE_FAILURES {
            assert!(!t.blocked("1.2.3.4", "bob", now));
            t.fail("1.2.3.4", "bob", now);
        }
        assert!(t.blocked("1.2.3.4", "bob", now));
        assert!(t.blocked("5.6.7.8", "bob", now), "per user");
        assert!(t.blocked("1.2.3.4", "carol", now), "per client");
        assert!(!t.blocked("5.6.7.8", "carol", now));
        assert!(!t.blocked("1.2.3.4", "bob", now + THROTTLE_WINDOW));
    }
}
