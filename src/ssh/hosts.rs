//! `hosts.yaml`, the seed's host registry, and target resolution.
//!
//! ```yaml
//! hosts:
//!   - alias: web1
//!     hostname: 192.168.1.10
//!     port: 22            # default 22
//!     username: root      # default root
//!     auth: key           # key | password | agent (default key)
//!     key_file: ~/.ssh/id_ed25519
//!     groups: [web]       # a string or a list; every host is also in `all`
//!     tags: {rack: a}
//! ```
//!
//! Unlike the seed (which loads nothing from a file with errors), every problem is a diagnostic
//! with its position, and the file is refused as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, FileErrors, Pos, did_you_mean};
use crate::yaml::{Node, Reader, Value};

/// The file name, looked up in the config root, then in the data directory.
pub const FILE: &str = "hosts.yaml";
const MAX_BYTES: u64 = 4 << 20;
const HOST_KEYS: &[&str] = &[
    "alias", "hostname", "port", "username", "auth", "key_file", "groups", "tags",
];

/// How a host authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// A private key file (`key_file`, or the usual `~/.ssh/id_*`); passphrase from the vault.
    Key,
    /// A password from the vault (`ssh:<alias>:password`).
    Password,
    /// The SSH agent at `SSH_AUTH_SOCK`.
    Agent,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Password => "password",
            Self::Agent => "agent",
        }
    }
}

/// One host of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub alias: String,
    pub hostname: String,
    pub port: u16,
    pub username: String,
    pub auth: Auth,
    pub key_file: Option<String>,
    /// Its groups as written, then `all`.
    pub groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl Host {
    /// `user@host:port`, as messages show it.
    pub fn address(&self) -> String {
        format!("{}@{}:{}", self.username, self.hostname, self.port)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "alias": self.alias,
            "hostname": self.hostname,
            "port": self.port,
            "username": self.username,
            "auth": self.auth.as_str(),
            "key_file": self.key_file.clone().unwrap_or_default(),
            "groups": self.groups,
            "tags": self.tags,
        })
    }
}

/// The loaded registry (an empty one when there is no file).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Where it came from (`None`: no file).
    pub path: Option<PathBuf>,
    pub hosts: Vec<Host>,
}

/// Why a target matched nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

impl Registry {
    /// Finds `hosts.yaml` in the config root, then the data directory, and loads it.
    pub fn find(root: &Path, home: &Path) -> Result<Self, FileErrors> {
        for dir in [root, home] {
            let path = dir.join(FILE);
            if path.exists() {
                return load(&path);
            }
        }
        Ok(Self::default())
    }

    pub fn get(&self, alias: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.alias == alias)
    }

    /// Every group with its members, `all` included, sorted by name.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in &self.hosts {
            for g in &h.groups {
                out.entry(g.clone()).or_default().push(h.alias.clone());
            }
        }
        out
    }

    /// The hosts a target names: an alias, a group, or a comma-separated list of both (each host
    /// once, in the registry's order). A part matching nothing is an error naming what exists.
    pub fn resolve(&self, target: &str) -> Result<Vec<&Host>, ResolveError> {
        let mut chosen = vec![false; self.hosts.len()];
        let parts: Vec<&str> = target
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(ResolveError(
                "the target is empty: name a host alias, a group, or `all`".into(),
            ));
        }
        for part in parts {
            if let Some(i) = self.hosts.iter().position(|h| h.alias == part) {
                chosen[i] = true;
                continue;
            }
            let mut any = false;
            for (i, h) in self.hosts.iter().enumerate() {
                if h.groups.iter().any(|g| g == part) {
                    chosen[i] = true;
                    any = true;
                }
            }
            if !any {
                return Err(ResolveError(self.no_match(part)));
            }
        }
        Ok(self
            .hosts
            .iter()
            .zip(chosen)
            .filter_map(|(h, c)| c.then_some(h))
            .collect())
    }

    fn no_match(&self, part: &str) -> String {
        if self.hosts.is_empty() {
            return format!(
                "No hosts or groups match target: {part} (no hosts are defined: {})",
                match &self.path {
                    Some(p) => format!("{} lists none", p.display()),
                    None => format!("there is no {FILE} in the config root or the data directory"),
                }
            );
        }
        let aliases: Vec<&str> = self.hosts.iter().map(|h| h.alias.as_str()).collect();
        let groups = self.groups();
        let mut names: Vec<&str> = aliases.clone();
        names.extend(groups.keys().map(String::as_str));
        let hint = did_you_mean(part, names.iter().copied())
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        format!(
            "No hosts or groups match target: {part} (hosts: {}; groups: {}){hint}",
            aliases.join(", "),
            groups.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Loads `path`: every problem of the file, with positions, or the registry.
pub fn load(path: &Path) -> Result<Registry, FileErrors> {
    let src = crate::yaml::read_file(path, MAX_BYTES, "hosts file")?;
    let mut r = Reader::new();
    let hosts = read(&mut r, &src.root);
    r.finish(path, src.text)?;
    Ok(Registry {
        path: Some(path.to_path_buf()),
        hosts,
    })
}

/// Parses text as if it were `path` (tests, `claw ssh` fixtures).
pub fn parse(path: &Path, text: &str) -> Result<Registry, FileErrors> {
    let src = crate::yaml::parse(path, text.to_owned())?;
    let mut r = Reader::new();
    let hosts = read(&mut r, &src.root);
    r.finish(path, src.text)?;
    Ok(Registry {
        path: Some(path.to_path_buf()),
        hosts,
    })
}

fn read(r: &mut Reader, root: &Node) -> Vec<Host> {
    if root.value == Value::Null {
        return Vec::new();
    }
    let mut list = None;
    for (k, v) in r.entries(root, &["hosts"], "hosts.yaml") {
        if k == "hosts" {
            list = Some(v);
        }
    }
    let Some(list) = list else {
        return Vec::new();
    };
    let items = match &list.value {
        Value::Seq(items) => items.as_slice(),
        Value::Null => &[],
        _ => {
            r.err(
                list.pos,
                format!("`hosts` must be a list of hosts, found {}", list.kind()),
            );
            return Vec::new();
        }
    };
    let mut hosts: Vec<Host> = Vec::new();
    let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
    for item in items {
        let Some(host) = read_host(r, item) else {
            continue;
        };
        if let Some(first) = seen.get(&host.alias) {
            let pos = item.get("alias").map_or(item.pos, |n| n.pos);
            r.diags.push(
                Diagnostic::error(pos, format!("host `{}` is defined twice", host.alias))
                    .with_help(format!("the first one is at line {}", first.line)),
            );
            continue;
        }
        seen.insert(host.alias.clone(), item.pos);
        hosts.push(host);
    }
    hosts
}

fn read_host(r: &mut Reader, node: &Node) -> Option<Host> {
    let entries = r.entries(node, HOST_KEYS, "a host");
    if !matches!(node.value, Value::Map(_)) {
        return None;
    }
    let mut alias = None;
    let mut hostname = None;
    let mut host = Host {
        alias: String::new(),
        hostname: String::new(),
        port: 22,
        username: "root".into(),
        auth: Auth::Key,
        key_file: None,
        groups: Vec::new(),
        tags: BTreeMap::new(),
    };
    let mut ok = true;
    for (k, v) in entries {
        match k {
            "alias" => {
                alias = r.string(v, "alias");
                if let Some(a) = &alias
                    && (a.is_empty() || a.contains(',') || a.chars().any(char::is_whitespace))
                {
                    r.err(
                        v.pos,
                        format!("`alias` `{a}` must be a non-empty name without spaces or commas"),
                    );
                    ok = false;
                }
            }
            "hostname" => {
                hostname = r.string(v, "hostname");
                if hostname.as_deref().is_some_and(|h| h.trim().is_empty()) {
                    r.err(v.pos, "`hostname` is empty");
                    ok = false;
                }
            }
            "port" => match v.value {
                Value::Int(p) if (1..=65535).contains(&p) => host.port = p as u16,
                _ => {
                    r.err(v.pos, "`port` must be a whole number from 1 to 65535");
                    ok = false;
                }
            },
            "username" => {
                if let Some(u) = r.string(v, "username") {
                    host.username = u;
                }
            }
            "auth" => match r.string(v, "auth").as_deref() {
                Some("key") => host.auth = Auth::Key,
                Some("password") => host.auth = Auth::Password,
                Some("agent") => host.auth = Auth::Agent,
                Some(other) => {
                    r.err_help(
                        v.pos,
                        format!("unknown `auth` `{other}` (expected key, password or agent)"),
                        did_you_mean(other, ["key", "password", "agent"]),
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "key_file" => {
                host.key_file = r.string(v, "key_file").filter(|s| !s.is_empty());
            }
            "groups" => {
                for (g, pos) in r.string_list(v, "groups") {
                    if g.is_empty() || g.contains(',') {
                        r.err(
                            pos,
                            format!("group `{g}` must be a non-empty name without commas"),
                        );
                        ok = false;
                    } else if !host.groups.contains(&g) {
                        host.groups.push(g);
                    }
                }
            }
            "tags" => {
                host.tags = r.string_map(v, "tags").into_iter().collect();
            }
            _ => {}
        }
    }
    match alias {
        Some(a) => host.alias = a,
        None => {
            r.err(node.pos, "a host needs an `alias`");
            ok = false;
        }
    }
    match hostname {
        Some(h) => host.hostname = h,
        None => {
            r.err(node.pos, "a host needs a `hostname`");
            ok = false;
        }
    }
    if !host.groups.iter().any(|g| g == "all") {
        host.groups.push("all".into());
    }
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(text: &str) -> Result<Registry, FileErrors> {
        parse(Path::new("hosts.yaml"), text)
    }

    #[test]
    fn defaults_groups_and_resolution() {
        let r = reg("hosts:\n  - {alias: a, hostname: 10.0.0.1, groups: web}\n  - alias: b\n    hostname: h\n    port: 2222\n    username: u\n    auth: password\n    groups: [web, db]\n  - {alias: c, hostname: h3, groups: [db]}\n")
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let a = &r.hosts[0];
        assert_eq!(
            (a.port, a.username.as_str(), a.auth),
            (22, "root", Auth::Key)
        );
        assert_eq!(a.groups, ["web", "all"]);
        let names = |t: &str| -> Vec<String> {
            r.resolve(t)
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|h| h.alias.clone())
                .collect()
        };
        assert_eq!(names("web"), ["a", "b"]);
        assert_eq!(names("all"), ["a", "b", "c"]);
        assert_eq!(names("c, a"), ["a", "c"]);
        assert_eq!(names("db,b"), ["b", "c"]);
        let e = r.resolve("wbe").err().map(|e| e.0).unwrap_or_default();
        assert!(e.contains("No hosts or groups match target: wbe"), "{e}");
        assert!(
            e.contains("hosts: a, b, c") && e.contains("groups: all, db, web"),
            "{e}"
        );
        assert!(e.contains("did you mean `web`"), "{e}");
    }

    #[test]
    fn errors_have_positions() {
        let e = reg("hosts:\n  - alias: a\n    port: 99999\n  - {alias: a, hostname: x, auth: pasword, colour: red}\n")
            .err()
            .map(|e| e.render())
            .unwrap_or_default();
        assert!(
            e.contains("hosts.yaml:2:5") && e.contains("needs a `hostname`"),
            "{e}"
        );
        assert!(e.contains("hosts.yaml:3:11") && e.contains("`port`"), "{e}");
        assert!(e.contains("unknown `auth` `pasword`"), "{e}");
        assert!(e.contains("unknown key `colour`"), "{e}");
    }

    #[test]
    fn duplicate_alias_is_an_error() {
        let e = reg("hosts:\n  - {alias: a, hostname: x}\n  - {alias: a, hostname: y}\n")
            .err()
            .map(|e| e.render())
            .unwrap_or_default();
        assert!(
            e.contains("hosts.yaml:3:") && e.contains("defined twice"),
            "{e}"
        );
    }
}
