//! `skill.yaml`: the seed's manifest (`name, version, description, author, script, slash_command,
//! triggers, dependencies, permissions, skill_type`) plus claw's `args` schema, `timeout` and
//! `paths`. Like workflow files, the spanned YAML tree is walked by hand and every problem is
//! collected with its line and column before anything is returned.

use std::path::Path;
use std::time::Duration;

use crate::diagnostic::FileErrors;
use crate::diagnostic::{Diagnostic, Pos, did_you_mean};
use crate::params::{ParamSpec, ParamType};
use crate::time::duration;
use crate::yaml::node::{self, Node, Value};

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
    let single = |source: Option<String>, message: String| FileErrors {
        path: path.to_path_buf(),
        source,
        diagnostics: vec![Diagnostic::error(Pos::default(), message).in_file(path)],
    };
    let meta = std::fs::metadata(path).map_err(|e| single(None, io_message(&e)))?;
    if meta.is_dir() {
        return Err(single(None, "is a directory, not a skill.yaml".into()));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(single(
            None,
            format!(
                "file is {} bytes; skill manifests are limited to {MAX_MANIFEST_BYTES} bytes",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| single(None, io_message(&e)))?;
    let Ok(source) = String::from_utf8(bytes) else {
        return Err(single(
            None,
            "file is not valid UTF-8 (skill.yaml must be UTF-8 text)".into(),
        ));
    };
    load_str(path, source)
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "cannot read: permission denied".to_owned(),
        _ => format!("cannot read: {e}"),
    }
}

/// Checks a manifest's text; `path` names it in diagnostics.
pub fn load_str(path: &Path, source: String) -> Result<Manifest, FileErrors> {
    let root = match node::parse(&source) {
        Ok(root) => root,
        Err(d) => {
            return Err(FileErrors {
                path: path.to_path_buf(),
                source: Some(source),
                diagnostics: vec![d.in_file(path)],
            });
        }
    };
    let mut cx = Checker { diags: Vec::new() };
    let manifest = cx.manifest(&root);
    if cx.diags.is_empty()
        && let Some(m) = manifest
    {
        return Ok(m);
    }
    let mut diagnostics: Vec<Diagnostic> = cx.diags.into_iter().map(|d| d.in_file(path)).collect();
    diagnostics.sort_by_key(|d| d.pos);
    diagnostics.dedup();
    Err(FileErrors {
        path: path.to_path_buf(),
        source: Some(source),
        diagnostics,
    })
}

/// Whether `name` is a usable skill name: it names a directory and a CLI argument.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

struct Checker {
    diags: Vec<Diagnostic>,
}

impl Checker {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(pos, message));
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => node.scalar_text(),
            _ => {
                self.err(
                    node.pos,
                    format!("`{field}` must be a string, found {}", node.kind()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if matches!(s.to_ascii_lowercase().as_str(), "yes" | "on") => Some(true),
            Value::Str(s) if matches!(s.to_ascii_lowercase().as_str(), "no" | "off") => Some(false),
            _ => {
                self.err(
                    node.pos,
                    format!("`{field}` must be true or false, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A list of strings; a single string counts as a list of one, null as empty.
    fn strings(&mut self, node: &Node, field: &str) -> Vec<(String, Pos)> {
        match &node.value {
            Value::Null => Vec::new(),
            Value::Str(s) => vec![(s.clone(), node.pos)],
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| match &i.value {
                    Value::Str(s) => Some((s.clone(), i.pos)),
                    _ => {
                        self.err(
                            i.pos,
                            format!(
                                "each entry of `{field}` must be a string, found {}",
                                i.kind()
                            ),
                        );
                        None
                    }
                })
                .collect(),
            _ => {
                self.err(
                    node.pos,
                    format!("`{field}` must be a list of strings, found {}", node.kind()),
                );
                Vec::new()
            }
        }
    }

    /// Mapping entries with string keys; other keys are reported.
    fn entries<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(&'n str, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            self.err(
                node.pos,
                format!("{what} must be a mapping, found {}", node.kind()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            match k.as_str() {
                Some(key) => out.push((key, v)),
                None => self.err(
                    k.pos,
                    format!("keys in {what} must be strings, found {}", k.kind()),
                ),
            }
        }
        out
    }

    fn manifest(&mut self, root: &Node) -> Option<Manifest> {
        if root.value == Value::Null {
            self.err(
                Pos { line: 1, col: 1 },
                format!(
                    "the file is empty: a skill.yaml needs {}",
                    REQUIRED.join(", ")
                ),
            );
            return None;
        }
        if !matches!(root.value, Value::Map(_)) {
            self.err(
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
        for (key, value) in self.entries(root, "a skill.yaml") {
            match key {
                "name" => {
                    let name = self.string(value, "name").unwrap_or_default();
                    if !valid_name(&name) {
                        self.err(
                            value.pos,
                            format!("skill name `{name}` must start with a letter or digit and hold only letters, digits, `-`, `_` and `.`"),
                        );
                    }
                    m.name = name;
                }
                "version" => m.version = self.string(value, "version").unwrap_or_default(),
                "description" => {
                    m.description = self.string(value, "description").unwrap_or_default();
                }
                "author" => m.author = self.string(value, "author").unwrap_or_default(),
                "script" => {
                    m.script_pos = value.pos;
                    let script = self.string(value, "script").unwrap_or_default();
                    let p = Path::new(&script);
                    if script.trim().is_empty() {
                        self.err(
                            value.pos,
                            "`script` is empty: name the file to run, such as run.sh or run.py",
                        );
                    } else if p.is_absolute()
                        || p.components()
                            .any(|c| matches!(c, std::path::Component::ParentDir))
                    {
                        self.err(
                            value.pos,
                            format!("`script` must be a path inside the skill's directory, found `{script}`"),
                        );
                    }
                    m.script = script;
                }
                "slash_command" => {
                    m.slash_command = self.boolean(value, "slash_command").unwrap_or(false);
                }
                "triggers" => match &value.value {
                    Value::Seq(items) => m.triggers = items.iter().map(Node::to_json).collect(),
                    Value::Null => {}
                    _ => self.err(
                        value.pos,
                        format!("`triggers` must be a list, found {}", value.kind()),
                    ),
                },
                "dependencies" => {
                    for (dep, pos) in self.strings(value, "dependencies") {
                        if dep.trim().is_empty() || dep.contains(char::is_whitespace) {
                            self.err(
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
                    for (p, pos) in self.strings(value, "permissions") {
                        if let Some(key) = p.strip_prefix("vault:")
                            && let Err(e) = crate::vault::validate_key(key)
                        {
                            self.err(pos, format!("permission `{p}`: {e}"));
                            continue;
                        }
                        m.permissions.push(p);
                    }
                }
                "skill_type" => {
                    let t = self.string(value, "skill_type").unwrap_or_default();
                    if !t.is_empty() && !SKILL_TYPES.contains(&t.as_str()) {
                        self.diags.push(
                            Diagnostic::error(
                                value.pos,
                                format!(
                                    "unknown skill_type `{t}` (expected one of: {})",
                                    SKILL_TYPES.join(", ")
                                ),
                            )
                            .with_help_opt(did_you_mean(&t, SKILL_TYPES.iter().copied())),
                        );
                    }
                    m.skill_type = t;
                }
                "tags" => {
                    m.tags = self
                        .strings(value, "tags")
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect();
                }
                "env" => {
                    if value.value != Value::Null {
                        for (k, v) in self.entries(value, "`env`") {
                            if let Some(s) = match v.value {
                                Value::Null => Some(String::new()),
                                _ => self.string(v, &format!("env.{k}")),
                            } {
                                m.env.push((k.to_owned(), s));
                            }
                        }
                    }
                }
                // The seed wrote these and never read them.
                "schedule" | "env_keys" => {}
                "args" => m.args = self.args(value),
                "timeout" => m.timeout = self.duration(value),
                "paths" => m.paths = self.paths(value),
                other => {
                    self.diags.push(
                        Diagnostic::error(
                            value_key_pos(root, other),
                            format!("unknown key `{other}` in skill.yaml"),
                        )
                        .with_help_opt(did_you_mean(other, KEYS.iter().copied())),
                    );
                }
            }
        }
        for field in REQUIRED {
            match root.get(field) {
                None => self.err(root.pos, format!("missing required field `{field}`")),
                Some(v) if v.value == Value::Null => {
                    self.err(v.pos, format!("required field `{field}` is empty"));
                }
                Some(_) => {}
            }
        }
        Some(m)
    }

    fn duration(&mut self, node: &Node) -> Option<Duration> {
        let parsed = match &node.value {
            Value::Int(i) if *i > 0 => Ok(Duration::from_secs(i.unsigned_abs())),
            Value::Float(f) if *f > 0.0 => {
                Duration::try_from_secs_f64(*f).map_err(|_| "is out of range".to_owned())
            }
            Value::Str(s) => duration::parse(s),
            _ => Err("must be greater than zero".to_owned()),
        };
        match parsed {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.err(node.pos, "invalid `timeout`: must be greater than zero");
                None
            }
            Err(why) => {
                self.err(
                    node.pos,
                    format!("invalid `timeout`: {why} (expected seconds or e.g. 30s, 5m, 1h)"),
                );
                None
            }
        }
    }

    fn paths(&mut self, node: &Node) -> Option<Paths> {
        let mut p = Paths::default();
        for (k, v) in self.entries(node, "`paths`") {
            let list = match k {
                "read" => &mut p.read,
                "write" => &mut p.write,
                other => {
                    self.diags.push(
                        Diagnostic::error(
                            value_key_pos(node, other),
                            format!("unknown key `{other}` in `paths` (expected read, write)"),
                        )
                        .with_help_opt(did_you_mean(other, ["read", "write"])),
                    );
                    continue;
                }
            };
            let entries = self.strings(v, &format!("paths.{k}"));
            for (path, pos) in entries {
                if path.trim().is_empty() {
                    self.err(pos, format!("an entry of `paths.{k}` is empty"));
                } else {
                    list.push(path);
                }
            }
        }
        Some(p)
    }

    /// `args:` — like workflow `params`: `name: {type, default, required, enum, description}`,
    /// or `name: default`, or `name:` (a required string).
    fn args(&mut self, node: &Node) -> Vec<ParamSpec> {
        let mut out: Vec<ParamSpec> = Vec::new();
        if node.value == Value::Null {
            return out;
        }
        for (name, spec) in self.entries(node, "`args`") {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.err(
                    spec.pos,
                    format!("argument name `{name}` must hold only letters, digits, `_` and `-`"),
                );
                continue;
            }
            let mut p = ParamSpec {
                name: name.to_owned(),
                kind: ParamType::String,
                default: None,
                choices: Vec::new(),
                required: false,
                description: String::new(),
            };
            match &spec.value {
                Value::Null => p.required = true,
                Value::Map(_) => {
                    let fields = self.entries(spec, &format!("argument `{name}`"));
                    let mut kind_set = false;
                    let mut required = None;
                    if let Some((_, t)) = fields.iter().find(|(k, _)| *k == "type") {
                        let text = self.string(t, "type").unwrap_or_default();
                        match parse_type(&text) {
                            Some(k) => {
                                p.kind = k;
                                kind_set = true;
                            }
                            None => self.diags.push(
                                Diagnostic::error(
                                    t.pos,
                                    format!("unknown argument type `{text}` (expected string, integer, number or boolean)"),
                                )
                                .with_help_opt(did_you_mean(
                                    &text,
                                    ["string", "integer", "number", "boolean"],
                                )),
                            ),
                        }
                    }
                    for (k, v) in fields {
                        match k {
                            "type" => {}
                            "default" => {
                                let value = v.to_json();
                                if !kind_set {
                                    p.kind = infer_type(&value);
                                }
                                if !value.is_null() && !p.kind.accepts(&value) {
                                    self.err(
                                        v.pos,
                                        format!(
                                            "default of `{name}` is not of type {}",
                                            p.kind.as_str()
                                        ),
                                    );
                                }
                                if !value.is_null() {
                                    p.default = Some(value);
                                }
                            }
                            "enum" => match &v.value {
                                Value::Seq(items) => {
                                    for item in items {
                                        let value = item.to_json();
                                        if !p.kind.accepts(&value) {
                                            self.err(
                                                item.pos,
                                                format!(
                                                    "choice for `{name}` is not of type {}",
                                                    p.kind.as_str()
                                                ),
                                            );
                                        }
                                        p.choices.push(value);
                                    }
                                }
                                _ => self.err(
                                    v.pos,
                                    format!("`enum` must be a list, found {}", v.kind()),
                                ),
                            },
                            "required" => required = self.boolean(v, "required"),
                            "description" => {
                                p.description =
                                    self.string(v, "description").unwrap_or_default();
                            }
                            other => self.diags.push(
                                Diagnostic::error(
                                    v.pos,
                                    format!("unknown key `{other}` in argument `{name}`"),
                                )
                                .with_help_opt(did_you_mean(
                                    other,
                                    ["type", "default", "enum", "required", "description"],
                                )),
                            ),
                        }
                    }
                    p.required = required.unwrap_or(p.default.is_none());
                    if let Some(d) = &p.default
                        && !p.choices.is_empty()
                        && !p.choices.contains(d)
                    {
                        self.err(
                            spec.pos,
                            format!("default of `{name}` is not one of its `enum` choices"),
                        );
                    }
                }
                Value::Seq(_) => self.err(
                    spec.pos,
                    format!("argument `{name}` must be a default value or a mapping with `type`, `default`, `enum`"),
                ),
                _ => {
                    let value = spec.to_json();
                    p.kind = infer_type(&value);
                    p.default = Some(value);
                }
            }
            out.push(p);
        }
        out
    }
}

/// The position of a key of a mapping (for "unknown key" messages).
fn value_key_pos(root: &Node, key: &str) -> Pos {
    match &root.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map_or(root.pos, |(k, _)| k.pos),
        _ => root.pos,
    }
}

fn parse_type(text: &str) -> Option<ParamType> {
    Some(match text {
        "string" | "str" => ParamType::String,
        "integer" | "int" => ParamType::Integer,
        "number" | "float" => ParamType::Number,
        "boolean" | "bool" => ParamType::Boolean,
        _ => return None,
    })
}

fn infer_type(value: &serde_json::Value) -> ParamType {
    match value {
        serde_json::Value::Bool(_) => ParamType::Boolean,
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => ParamType::Integer,
        serde_json::Value::Number(_) => ParamType::Number,
        _ => ParamType::String,
    }
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
