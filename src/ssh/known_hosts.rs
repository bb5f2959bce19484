//! Host keys: OpenSSH's `known_hosts` format, checked strictly.
//!
//! Lines are `[marker] patterns keytype base64 [comment]`: patterns are comma-separated host
//! names, `[host]:port` for a port other than 22, wildcards `*` and `?`, `!` negations, or one
//! hashed entry `|1|salt|hmac-sha1(salt, name)`. `@revoked` marks a key refused for every host;
//! `@cert-authority` lines are read but certificates are not verified: a host that only such a
//! line covers is refused with [`Verdict::CertAuthorityOnly`], never trusted. A host may have
//! several keys. The data directory's file is read first, then `~/.ssh/known_hosts`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The SHA256 fingerprint of a key blob, as OpenSSH prints it (`SHA256:…`, no padding).
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// The name a host is looked up by: `host`, or `[host]:port` when the port is not 22.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// What the files say about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pinned for this host (in `file`).
    Known { file: PathBuf },
    /// Marked `@revoked` (in `file`).
    Revoked { file: PathBuf, line: usize },
    /// The host is pinned with other keys: the presented one is not among them.
    Changed {
        file: PathBuf,
        line: usize,
        expected: Vec<String>,
    },
    /// No key is pinned for this host, but a `@cert-authority` line (in `file`) covers it: the
    /// host is meant to be trusted through a certificate, which claw cannot verify (russh 0.59
    /// negotiates no `*-cert-v01@openssh.com` host key). Refused, and not pinned on first use.
    CertAuthorityOnly { file: PathBuf, line: usize },
    /// No key is pinned for this host.
    Unknown,
}

#[derive(Debug)]
struct Entry {
    marker: Option<String>,
    patterns: String,
    blob: Vec<u8>,
    line: usize,
}

fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let mut marker = None;
        let Some(mut first) = words.next() else {
            continue;
        };
        if first.starts_with('@') {
            marker = Some(first.to_owned());
            let Some(next) = words.next() else { continue };
            first = next;
        }
        let (Some(_keytype), Some(b64)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(blob) = STANDARD.decode(b64) else {
            continue;
        };
        out.push(Entry {
            marker,
            patterns: first.to_owned(),
            blob,
            line: n + 1,
        });
    }
    out
}

/// Whether `name` matches a glob with `*` and `?` (ASCII case-insensitive, as OpenSSH).
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn hashed_matches(entry: &str, name: &str) -> bool {
    let mut parts = entry.split('|');
    let (Some(""), Some("1"), Some(salt), Some(hash)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Whether an entry's patterns name `name` (a negated match excludes it).
fn matches(patterns: &str, name: &str) -> bool {
    if patterns.starts_with('|') {
        return hashed_matches(patterns, name);
    }
    let mut hit = false;
    for p in patterns.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, name) {
                return false;
            }
        } else if glob(p, name) {
            hit = true;
        }
    }
    hit
}

/// Checks `blob` for `host:port` against `files` in order. A revocation anywhere wins; then the
/// first file that pins the host decides.
pub fn check(files: &[PathBuf], host: &str, port: u16, blob: &[u8]) -> Verdict {
    let name = host_name(host, port);
    let mut loaded = Vec::new();
    for f in files {
        if let Ok(text) = std::fs::read_to_string(f) {
            loaded.push((f.clone(), parse(&text)));
        }
    }
    for (file, entries) in &loaded {
        if let Some(e) = entries
            .iter()
            .find(|e| e.marker.as_deref() == Some("@revoked") && e.blob == blob)
        {
            return Verdict::Revoked {
                file: file.clone(),
                line: e.line,
            };
        }
    }
    for (file, entries) in &loaded {
        let pinned: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.marker.is_none() && matches(&e.patterns, &name))
            .collect();
        if pinned.is_empty() {
            continue;
        }
        if pinned.iter().any(|e| e.blob == blob) {
            return Verdict::Known { file: file.clone() };
        }
        return Verdict::Changed {
            file: file.clone(),
            line: pinned[0].line,
            expected: pinned.iter().map(|e| fingerprint(&e.blob)).collect(),
        };
    }
    for (file, entries) in &loaded {
        if let Some(e) = entries
            .iter()
            .find(|e| e.marker.as_deref() == Some("@cert-authority") && matches(&e.patterns, &name))
        {
            return Verdict::CertAuthorityOnly {
                file: file.clone(),
                line: e.line,
            };
        }
    }
    Verdict::Unknown
}

/// Appends a pin for `host:port` to `file` (created 0600).
pub fn pin(
    file: &Path,
    host: &str,
    port: u16,
    keytype: &str,
    blob: &[u8],
    comment: &str,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    let line = format!(
        "{} {keytype} {} {comment}\n",
        host_name(host, port),
        STANDARD.encode(blob)
    );
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap_or_else(|e| panic!("{e}"));
        mac.update(name.as_bytes());
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn verdicts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("known_hosts");
        let k1 = STANDARD.encode(b"key-one");
        let k2 = STANDARD.encode(b"key-two");
        let k3 = STANDARD.encode(b"key-three");
        let text = format!(
            "# comment\n[10.0.0.1]:2222 ssh-ed25519 {k1}\n{} ssh-ed25519 {k2}\nweb*,!web9 ssh-rsa {k1}\n@revoked * ssh-ed25519 {k3}\n@cert-authority *.lan ssh-ed25519 {k2}\n",
            hashed("db.lan", b"0123456789abcdefghij")
        );
        std::fs::write(&f, text).unwrap_or_else(|e| panic!("{e}"));
        let files = vec![dir.path().join("missing"), f.clone()];
        assert!(matches!(
            check(&files, "10.0.0.1", 2222, b"key-one"),
            Verdict::Known { .. }
        ));
        assert!(matches!(
            check(&files, "10.0.0.1", 2222, b"key-two"),
            Verdict::Changed { line: 2, .. }
        ));
        assert_eq!(check(&files, "10.0.0.1", 22, b"key-one"), Verdict::Unknown);
        assert!(matches!(
            check(&files, "db.lan", 22, b"key-two"),
            Verdict::Known { .. }
        ));
        assert!(matches!(
            check(&files, "db.lan", 22, b"key-one"),
            Verdict::Changed { .. }
        ));
        assert!(matches!(
            check(&files, "web3", 22, b"key-one"),
            Verdict::Known { .. }
        ));
        assert_eq!(check(&files, "web9", 22, b"key-one"), Verdict::Unknown);
        assert!(matches!(
            check(&files, "anything", 22, b"key-three"),
            Verdict::Revoked { line: 5, .. }
        ));
        // Only a certificate authority covers nas.lan: refused (even when the host presents
        // the authority's own key), never unknown-and-pinnable on first use.
        assert!(matches!(
            check(&files, "nas.lan", 22, b"key-two"),
            Verdict::CertAuthorityOnly { line: 6, .. }
        ));
        pin(&f, "new", 22, "ssh-ed25519", b"key-new", "claw").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            check(&files, "new", 22, b"key-new"),
            Verdict::Known { .. }
        ));
    }

    #[test]
    fn fingerprint_is_openssh_form() {
        // `ssh-keygen -lf` of an all-zero blob is not at hand; the form is what matters.
        let f = fingerprint(b"x");
        assert!(f.starts_with("SHA256:") && !f.ends_with('='), "{f}");
        assert_eq!(f.len(), 7 + 43);
    }
}
