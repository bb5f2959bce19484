//! `skill.yaml`: the seed's manifest (`name, version, description, author, script, slash_command,
//! triggers, dependencies, permissions, skill_type`) plus claw's `args` schema, `timeout` and
//! `paths`. Like workflow files, the spanned YAML tree is walked by hand and every problem is
//! collected with its line and column before anything is returned.

use std::path::Path;
use std::time::Duration;

use crate::diagnostic::{Diagnostic, FileErrors, Pos, did_you_mean};
use crate::params::ParamSpec;
use crate::yaml::{self, Node, Reader, Value};

/// Manifests larger than this are refused before parsing.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// The file name of a manifest inside a skill's directory.
pub const MANIFEST_FILE: &str = "skill.yaml";

/// Fields the seed required.
pub const REQUIRED: &[&str] = &["name", "version", "description", "author", "script"];

/// Every key a manifest may have. `tags`, `env`, `schedule` and `env_keys` appear in the seed's
/// own manifests; `args`, `timeout` and `paths` are claw's.
pub const KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "author",
    "script",
    "slash_command",
    "triggers",
    "dependencies",
    "permissions",
    "skill_type",
    "args",
    "timeout",
    "paths",
    "tags",
    "env",
    "schedule",
    "env_keys",
];

/// The seed's `skill_type` values (the empty string means none).
pub const SKILL_TYPES: &[&str] = &["planning", "analysis", "execution", "validation", "testing"];

/// A loaded, valid manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub author: String,
    /// The script, relative to the skill's directory.
    pub script: String,
    /// Where `script:` stands in the file (for "script not found").
    pub script_pos: Pos,
    pub slash_command: bool,
    /// The seed's trigger entries, kept as written.
    pub triggers: Vec<serde_json::Value>,
    /// Programs that must be on PATH.
    pub dependencies: Vec<String>,
    pub permissions: Vec<String>,
    /// `""` or one of [`SKILL_TYPES`].
    pub skill_type: String,
    pub tags: Vec<String>,
    /// Variables given to the script (defaults it may rely on; never secrets).
    pub env: Vec<(String, String)>,
    /// The arguments the skill takes; empty means "any `k=v`".
    pub args: Vec<ParamSpec>,
    pub timeout: Option<Duration>,
    /// Landlock confinement: the only paths the skill may read and write.
    pub paths: Option<Paths>,
}

/// `paths: {read: [...], write: [...]}`; relative entries are relative to the skill's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

/// What the `vault` permissions grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultGrant {
    Nothing,
    /// `vault`: every value.
    All,
    /// `vault:KEY` entries.
    Keys(Vec<String>),
}

impl Manifest {
    /// What the permissions grant from the vault.
    pub fn vault_grant(&self) -> VaultGrant {
        if self.permissions.iter().any(|p| p == "vault") {
            return VaultGrant::All;
        }
        let keys: Vec<String> = self
            .permissions
            .iter()
            .filter_map(|p| p.strip_prefix("vault:"))
            .map(str::to_owned)
            .collect();
        if keys.is_empty() {
            VaultGrant::Nothing
        } else {
            VaultGrant::Keys(keys)
        }
    }
}

/// Reads and checks `path` (a `skill.yaml`).
pub fn load_file(path: &Path) -> Result<Manifest, FileErrors> {
    let src = yaml::read_file(path, MAX_MANIFEST_BYTES, "skill manifest")?;
    check(path, src)
}

/// Checks a manifest's text; `path` names it in diagnostics.
pub fn load_str(path: &Path, source: String) -> Result<Manifest, FileErrors> {
    check(path, yaml::parse(path, source)?)
}

fn check(path: &Path, src: yaml::Source) -> Result<Manifest, FileErrors> {
    let mut r = Reader::new();
    let manifest = manifest(&mut r, &src.root);
    r.finish(path, src.text)?;
    // No diagnostic and no manifest cannot happen: `manifest` reports why it returns none.
    manifest.ok_or_else(|| {
        FileErrors::single(
            path,
            None,
            Diagnostic::error(Pos::default(), "not a skill manifest"),
        )
    })
}

/// Whether `name` is a usable skill name: it names a directory and a CLI argument.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn manifest(r: &mut Reader, root: &Node) -> Option<Manifest> {
    if root.value == Value::Null {
        r.err(
            Pos { line: 1, col: 1 },
            format!(
                "the file is empty: a skill.yaml needs {}",
                REQUIRED.join(", ")
            ),
        );
        return None;
    }
    if !matches!(root.value, Value::Map(_)) {
        r.err(
            root.pos,
            format!(
                "a skill.yaml must be a mapping of fields, found {}",
                root.kind()
            ),
        );
        return None;
    }
    let mut m = Manifest {
        name: String::new(),
        version: String::new(),
        description: String::new(),
        author: String::new(),
        script: String::new(),
        script_pos: root.pos,
        slash_command: false,
        triggers: Vec::new(),
        dependencies: Vec::new(),
        permissions: Vec::new(),
        skill_type: String::new(),
        tags: Vec::new(),
        env: Vec::new(),
        args: Vec::new(),
        timeout: None,
        paths: None,
    };
    for (key, value) in r.entries(root, KEYS, "skill.yaml") {
        match key {
            "name" => {
                let name = r.string(value, "name").unwrap_or_default();
                if !valid_name(&name) {
                    r.err(
                        value.pos,
                        format!("skill name `{name}` must start with a letter or digit and hold only letters, digits, `-`, `_` and `.`"),
                    );
                }
                m.name = name;
            }
            "version" => m.version = r.string(value, "version").unwrap_or_default(),
            "description" => {
                m.description = r.string(value, "description").unwrap_or_default();
            }
            "author" => m.author = r.string(value, "author").unwrap_or_default(),
            "script" => {
                m.script_pos = value.pos;
                let script = r.string(value, "script").unwrap_or_default();
                let p = Path::new(&script);
                if script.trim().is_empty() {
                    r.err(
                        value.pos,
                        "`script` is empty: name the file to run, such as run.sh or run.py",
                    );
                } else if p.is_absolute()
                    || p.components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    r.err(
                        value.pos,
                        format!(
                            "`script` must be a path inside the skill's directory, found `{script}`"
                        ),
                    );
                }
                m.script = script;
            }
            "slash_command" => {
                m.slash_command = r.boolean(value, "slash_command").unwrap_or(false);
            }
            "triggers" => match &value.value {
                Value::Seq(items) => m.triggers = items.iter().map(Node::to_json).collect(),
                Value::Null => {}
                _ => r.err(
                    value.pos,
                    format!("`triggers` must be a list, found {}", value.kind()),
                ),
            },
            "dependencies" => {
                for (dep, pos) in r.string_list(value, "dependencies") {
                    if dep.trim().is_empty() || dep.contains(char::is_whitespace) {
                        r.err(
                            pos,
                            format!(
                                "dependency `{dep}` must be the name of one program (looked up on PATH)"
                            ),
                        );
                    } else {
                        m.dependencies.push(dep);
                    }
                }
            }
            "permissions" => {
                for (p, pos) in r.string_list(value, "permissions") {
                    if let Some(key) = p.strip_prefix("vault:")
                        && let Err(e) = crate::vault::validate_key(key)
                    {
                        r.err(pos, format!("permission `{p}`: {e}"));
                        continue;
                    }
                    m.permissions.push(p);
                }
            }
            "skill_type" => {
                let t = r.string(value, "skill_type").unwrap_or_default();
                if !t.is_empty() && !SKILL_TYPES.contains(&t.as_str()) {
                    r.err_help(
                        value.pos,
                        format!(
                            "unknown skill_type `{t}` (expected one of: {})",
                            SKILL_TYPES.join(", ")
                        ),
                        did_you_mean(&t, SKILL_TYPES.iter().copied()),
                    );
                }
                m.skill_type = t;
            }
            "tags" => {
                m.tags = r
                    .string_list(value, "tags")
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
            }
            "env" => m.env = r.string_map(value, "env"),
            // The seed wrote these and never read them.
            "schedule" | "env_keys" => {}
            "args" => m.args = args(r, value),
            "timeout" => m.timeout = r.duration(value, "timeout"),
            "paths" => m.paths = Some(paths(r, value)),
            _ => {}
        }
    }
    for field in REQUIRED {
        match root.get(field) {
            None => r.err(root.pos, format!("missing required field `{field}`")),
            Some(v) if v.value == Value::Null => {
                r.err(v.pos, format!("required field `{field}` is empty"));
            }
            Some(_) => {}
        }
    }
    Some(m)
}

fn paths(r: &mut Reader, node: &Node) -> Paths {
    const KEYS: [&str; 2] = ["read", "write"];
    let mut p = Paths::default();
    let Value::Map(entries) = &node.value else {
        r.err(
            node.pos,
            format!("`paths` must be a mapping, found {}", node.kind()),
        );
        return p;
    };
    for (k, v) in entries {
        let list = match k.as_str() {
            Some("read") => &mut p.read,
            Some("write") => &mut p.write,
            Some(other) => {
                r.err_help(
                    k.pos,
                    format!("unknown key `{other}` in `paths` (expected read, write)"),
                    did_you_mean(other, KEYS),
                );
                continue;
            }
            None => {
                r.err(
                    k.pos,
                    format!("keys in `paths` must be strings, found {}", k.kind()),
                );
                continue;
            }
        };
        let field = format!("paths.{}", k.as_str().unwrap_or_default());
        for (path, pos) in r.string_list(v, &field) {
            if path.trim().is_empty() {
                r.err(pos, format!("an entry of `{field}` is empty"));
            } else {
                list.push(path);
            }
        }
    }
    p
}

/// `args:` — the workflow `params` schema (`crate::params::load`); names must also be usable as
/// `k=v` arguments and `SKILL_<KEY>` variables.
fn args(r: &mut Reader, node: &Node) -> Vec<ParamSpec> {
    if node.value == Value::Null {
        return Vec::new();
    }
    if let Value::Map(entries) = &node.value {
        for (k, _) in entries {
            if let Some(name) = k.as_str()
                && (name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            {
                r.err(
                    k.pos,
                    format!("argument name `{name}` must hold only letters, digits, `_` and `-`"),
                );
            }
        }
    }
    crate::params::load(r, node, "args", "argument")
}

/// Binds `k=v` arguments to a manifest's `args` schema: unknown names (with a suggestion),
/// missing required ones and values of the wrong type are errors; defaults fill the gaps. Without
/// a schema every argument passes as given (the seed's behaviour).
pub fn bind_args(
    manifest: &Manifest,
    given: &[(String, String)],
) -> Result<Vec<(String, String)>, Vec<String>> {
    if manifest.args.is_empty() {
        return Ok(given.to_vec());
    }
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (k, _) in given {
        if !manifest.args.iter().any(|a| a.name == *k) {
            let help = did_you_mean(k, manifest.args.iter().map(|a| a.name.as_str()))
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            let known: Vec<&str> = manifest.args.iter().map(|a| a.name.as_str()).collect();
            problems.push(format!(
                "unknown argument `{k}`{help}; skill `{}` takes: {}",
                manifest.name,
                known.join(", ")
            ));
        }
    }
    for spec in &manifest.args {
        let value = given.iter().rev().find(|(k, _)| *k == spec.name);
        match value {
            Some((_, text)) => match spec.kind.parse(text) {
                Ok(v) => {
                    if !spec.choices.is_empty() && !spec.choices.contains(&v) {
                        let choices: Vec<String> = spec.choices.iter().map(json_text).collect();
                        problems.push(format!(
                            "argument `{}` must be one of: {}",
                            spec.name,
                            choices.join(", ")
                        ));
                    } else {
                        out.push((spec.name.clone(), json_text(&v)));
                    }
                }
                Err(e) => problems.push(format!("argument `{}`: {e}", spec.name)),
            },
            None => match &spec.default {
                Some(d) => out.push((spec.name.clone(), json_text(d))),
                None if spec.required => problems.push(format!(
                    "missing argument `{}`{}",
                    spec.name,
                    if spec.description.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", spec.description)
                    }
                )),
                None => {}
            },
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A JSON value as an environment variable's text: strings as they are, the rest as JSON.
pub fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<Manifest, FileErrors> {
        load_str(Path::new("skills/x/skill.yaml"), src.to_owned())
    }

    const SEED: &str = "name: heartbeat\nversion: \"0.1.0\"\ndescription: \"Ping\"\nauthor: DreDay\nslash_command: true\nscript: run.sh\ntriggers: []\ndependencies: [ping, curl]\npermissions: [ssh]\n";

    #[test]
    fn a_seed_manifest_loads() {
        let m = load(SEED).expect("valid");
        assert_eq!(m.name, "heartbeat");
        assert_eq!(m.version, "0.1.0");
        assert!(m.slash_command);
        assert_eq!(m.dependencies, ["ping", "curl"]);
        assert_eq!(m.script_pos, Pos { line: 6, col: 9 });
        assert_eq!(m.vault_grant(), VaultGrant::Nothing);
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let e = load("name: a b\nversion: 1\nscript: ../x.sh\ntimout: 5\npaths: {reed: [/]}\nskill_type: plan\n")
            .expect_err("invalid");
        let heads: Vec<String> = e.diagnostics.iter().map(Diagnostic::headline).collect();
        let all = heads.join("\n");
        for want in [
            "skills/x/skill.yaml:1:1: missing required field `description`",
            "skills/x/skill.yaml:1:1: missing required field `author`",
            "skills/x/skill.yaml:1:7: skill name `a b` must start",
            "skills/x/skill.yaml:3:9: `script` must be a path inside the skill's directory",
            "skills/x/skill.yaml:4:1: unknown key `timout` in skill.yaml",
            "skills/x/skill.yaml:5:9: unknown key `reed` in `paths`",
            "skills/x/skill.yaml:6:13: unknown skill_type `plan`",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
        let timout = e
            .diagnostics
            .iter()
            .find(|d| d.message.contains("timout"))
            .expect("timout");
        assert_eq!(timout.help.as_deref(), Some("did you mean `timeout`?"));
    }

    #[test]
    fn claw_fields_load() {
        let m = load(&format!(
            "{}timeout: 2m\npaths: {{read: [data], write: [/tmp/out]}}\nargs:\n  host: {{type: string, required: true}}\n  count: 3\n",
            SEED.replace("[ssh]", "[ssh, vault:API_TOKEN]")
        ))
        .expect("valid");
        assert_eq!(m.timeout, Some(Duration::from_secs(120)));
        assert_eq!(
            m.paths,
            Some(Paths {
                read: vec!["data".into()],
                write: vec!["/tmp/out".into()]
            })
        );
        assert_eq!(m.vault_grant(), VaultGrant::Keys(vec!["API_TOKEN".into()]));
        assert_eq!(
            bind_args(&m, &[("host".into(), "h1".into())]).expect("bound"),
            vec![("host".into(), "h1".into()), ("count".into(), "3".into())]
        );
        let errs = bind_args(
            &m,
            &[("hots".into(), "h1".into()), ("count".into(), "x".into())],
        )
        .expect_err("bad");
        let all = errs.join("\n");
        assert!(
            all.contains("unknown argument `hots` (did you mean `host`?)"),
            "{all}"
        );
        assert!(
            all.contains("argument `count`: expected an integer"),
            "{all}"
        );
        assert!(all.contains("missing argument `host`"), "{all}");
    }

    #[test]
    fn a_bad_vault_permission_is_reported() {
        let e = load(&SEED.replace("[ssh]", "[\"vault:\"]")).expect_err("invalid");
        assert!(
            e.diagnostics[0].message.contains("permission `vault:`"),
            "{:?}",
            e.diagnostics
        );
    }
}
