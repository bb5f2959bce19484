//! Credential rotation policies, in the seed's file `rotation_policies.yaml` (data directory):
//! `KEY: {max_age_days: 90, last_rotated: <ISO time>}`. A secret is *expired* when it is as old
//! as its maximum age (or its rotation date is unknown), *due soon* from 80% of it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::time;
use crate::yaml::{self, Reader, Value};

pub const POLICY_FILE: &str = "rotation_policies.yaml";

/// One key's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub key: String,
    pub max_age_days: u32,
    pub last_rotated: Option<DateTime<Utc>>,
}

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    DueSoon,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::DueSoon => "due soon",
            Self::Expired => "expired",
        }
    }
}

impl Policy {
    /// Age in whole days (`None` if the last rotation is unknown) and state at `now`.
    pub fn check(&self, now: DateTime<Utc>) -> (Option<i64>, State) {
        let Some(at) = self.last_rotated else {
            return (None, State::Expired);
        };
        let days = (now - at).num_days();
        let max = i64::from(self.max_age_days);
        let state = if days >= max {
            State::Expired
        } else if days * 10 >= max * 8 {
            State::DueSoon
        } else {
            State::Ok
        };
        (Some(days), state)
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(POLICY_FILE)
}

/// Policy files larger than this are refused before parsing.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the policies (a missing file is none). Errors are every problem of the file, each with
/// its line and column.
pub fn load(dir: &Path) -> Result<Vec<Policy>, String> {
    let file = path(dir);
    if !file.exists() {
        return Ok(Vec::new());
    }
    let src =
        yaml::read_file(&file, MAX_FILE_BYTES, "rotation policy file").map_err(|e| e.render())?;
    if src.root.value == Value::Null {
        return Ok(Vec::new());
    }
    let mut r = Reader::new();
    let mut out = Vec::new();
    for (key, v) in r.entries(
        &src.root,
        &[],
        "the rotation policies (key names to policies)",
    ) {
        let mut policy = Policy {
            key: key.to_owned(),
            max_age_days: 90,
            last_rotated: None,
        };
        // `KEY:` alone takes the defaults.
        if v.value != Value::Null {
            for (field, n) in r.entries(v, FIELDS, &format!("the policy of `{key}`")) {
                match field {
                    "max_age_days" => {
                        if let Some(d) = r.whole_number(n, "max_age_days", 1..=i64::MAX) {
                            policy.max_age_days = u32::try_from(d).unwrap_or(u32::MAX);
                        }
                    }
                    "last_rotated" if n.value == Value::Null => {}
                    _ => {
                        let text = n.scalar_text().unwrap_or_default();
                        match time::parse_iso(&text) {
                            Some(t) => policy.last_rotated = Some(t),
                            None => r.err(
                                n.pos,
                                format!("`last_rotated` is not an ISO 8601 time: `{text}`"),
                            ),
                        }
                    }
                }
            }
        }
        out.push(policy);
    }
    r.finish(&file, src.text).map_err(|e| e.render())?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The fields of one policy (the seed's).
const FIELDS: &[&str] = &["max_age_days", "last_rotated"];

/// Writes the policies atomically (temp file, fsync, rename, fsync the directory).
pub fn save(dir: &Path, policies: &[Policy]) -> Result<(), String> {
    let mut text =
        String::from("# Credential rotation policies (claw vault rotation policy set KEY DAYS)\n");
    for p in policies {
        text.push_str(&format!(
            "{}:\n  max_age_days: {}\n",
            yaml_key(&p.key),
            p.max_age_days
        ));
        match p.last_rotated {
            Some(t) => text.push_str(&format!("  last_rotated: '{}'\n", time::rfc3339(&t))),
            None => text.push_str("  last_rotated: null\n"),
        }
    }
    let file = path(dir);
    crate::fsutil::write_atomic(&file, &format!(".{POLICY_FILE}."), text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

fn yaml_key(key: &str) -> String {
    // Key names are `[A-Za-z0-9_.:-]`; quote them so `:` and leading digits stay strings.
    format!("'{key}'")
}

/// Sets a key's maximum age (keeping its last rotation time); `actor` is recorded in the audit
/// log (`vault.rotation.policy_set`), and the change is an error when it cannot be.
pub fn set_policy(dir: &Path, key: &str, days: u32, actor: &str) -> Result<(), String> {
    let mut all = load(dir)?;
    match all.iter_mut().find(|p| p.key == key) {
        Some(p) => p.max_age_days = days,
        None => all.push(Policy {
            key: key.to_owned(),
            max_age_days: days,
            last_rotated: None,
        }),
    }
    all.sort_by(|a, b| a.key.cmp(&b.key));
    save(dir, &all)?;
    crate::audit::AuditLog::in_dir(dir)
        .record(&crate::audit::Event::new(
            actor,
            crate::audit::Action::VaultRotationPolicySet,
            key,
            "ok",
            serde_json::json!({"max_age_days": days}),
        ))
        .map(drop)
        .map_err(|e| format!("the policy was set, but not in the audit log: {e}"))
}

/// Records that a key was just given a new value (if it has a policy).
pub fn mark_rotated(dir: &Path, key: &str, now: DateTime<Utc>) -> Result<(), String> {
    let mut all = load(dir)?;
    let Some(p) = all.iter_mut().find(|p| p.key == key) else {
        return Ok(());
    };
    p.last_rotated = Some(now);
    save(dir, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_seed_thresholds() {
        let now = Utc::now();
        let p = |days: i64| Policy {
            key: "K".into(),
            max_age_days: 90,
            last_rotated: Some(now - chrono::Duration::days(days)),
        };
        assert_eq!(p(10).check(now).1, State::Ok);
        assert_eq!(p(72).check(now).1, State::DueSoon);
        assert_eq!(p(90).check(now).1, State::Expired);
        assert_eq!(
            Policy {
                key: "K".into(),
                max_age_days: 90,
                last_rotated: None
            }
            .check(now),
            (None, State::Expired)
        );
    }

    #[test]
    fn round_trip_and_seed_times() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(POLICY_FILE),
            "API_KEY:\n  max_age_days: 30\n  last_rotated: '2026-01-01T10:00:00.123456'\nssh:web:password:\n  max_age_days: 60\n",
        )
        .unwrap();
        let all = load(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].max_age_days, 30);
        assert!(all[0].last_rotated.is_some());
        set_policy(dir.path(), "NEW", 7, "cli:test").unwrap();
        mark_rotated(dir.path(), "NEW", Utc::now()).unwrap();
        let again = load(dir.path()).unwrap();
        assert_eq!(again.len(), 3);
        assert!(
            again
                .iter()
                .any(|p| p.key == "NEW" && p.last_rotated.is_some())
        );
        assert!(again.iter().any(|p| p.key == "ssh:web:password"));
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(POLICY_FILE),
            "A:\n  max_age_days: soon\nB:\n  last_rotated: yesterday\n  max_age_dys: 3\nC:\n",
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err();
        for want in [
            ":2:17: `max_age_days` must be a whole number of at least 1",
            ":4:17: `last_rotated` is not an ISO 8601 time: `yesterday`",
            ":5:3: unknown key `max_age_dys` in the policy of `B`",
            "did you mean `max_age_days`?",
        ] {
            assert!(e.contains(want), "missing {want:?} in\n{e}");
        }
    }
}
