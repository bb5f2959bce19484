//! From a skill and its arguments to a [`Launch`]: what to execute, in which directory, with
//! which environment and confinement. Everything that can be checked before the script starts is
//! checked here (script present, dependencies on PATH, arguments against the schema, vault grants,
//! confinement paths), so a skill that cannot work never starts half-way.
//!
//! The environment is built from nothing: PATH, HOME, LANG and TERM from claw's own environment,
//! the manifest's `env:` defaults, the vault values its permissions grant (named as their vault
//! keys), `SKILL_<KEY>` for each argument, and `CLAW_OUTPUT` (where the skill may write
//! `key=value` outputs). Nothing else of claw's environment reaches the script.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::manifest::{VaultGrant, bind_args};
use super::{Skill, SkillError, sandbox};
use crate::vault::{Secret, Vault};

/// Variables copied from claw's environment into every skill's.
pub const PASSED_ENV: &[&str] = &["PATH", "HOME", "LANG", "TERM"];

/// PATH for a skill when claw itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A skill ready to start. `Debug` shows the environment's names, never its values (some are
/// secrets).
#[derive(Clone)]
pub struct Launch {
    pub skill: String,
    /// What is executed (the interpreter, or the script itself).
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// Landlock confinement (the manifest declared `paths:`).
    pub confinement: Option<Confinement>,
    /// The vault values given to the skill (masked in everything it prints).
    secrets: Vec<Secret>,
}

/// The absolute paths a confined skill may read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
}

/// What a launch needs from its surroundings.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    /// The data directory (for the vault).
    pub home: PathBuf,
    /// The variables of [`PASSED_ENV`] that claw has.
    pub base_env: Vec<(String, String)>,
    /// The file named by `CLAW_OUTPUT`.
    pub outputs_path: Option<PathBuf>,
    /// A timeout that overrides the manifest's (a workflow step's own `timeout:`).
    pub timeout: Option<Duration>,
}

impl LaunchContext {
    /// claw's own PATH, HOME, LANG and TERM; no outputs file.
    pub fn from_process(home: &Path) -> Self {
        let base_env = PASSED_ENV
            .iter()
            .filter_map(|k| crate::config::env::var(k).map(|v| ((*k).to_owned(), v)))
            .collect();
        Self {
            home: home.to_path_buf(),
            base_env,
            outputs_path: None,
            timeout: None,
        }
    }

    fn path_var(&self) -> String {
        self.base_env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or_else(|| DEFAULT_PATH.to_owned(), |(_, v)| v.clone())
    }
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("skill", &self.skill)
            .field("program", &self.program)
            .field("args", &self.args)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("confinement", &self.confinement)
            .finish_non_exhaustive()
    }
}

impl Launch {
    /// The vault values the skill was given.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(Secret::expose)
    }

    /// A redactor for the skill's output.
    pub fn redactor(&self) -> crate::redact::Redactor {
        crate::redact::Redactor::new(self.secret_values())
    }

    /// The process to spawn. A confined skill goes through the `claw __sandbox` launcher
    /// (`launcher` is claw's own executable).
    pub fn command(&self, launcher: &Path) -> crate::proc::Command {
        let mut cmd = match &self.confinement {
            None => {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a skill's launch; the supervisor runs it"
                )]
                let mut c = crate::proc::Command::new(&self.program);
                c.args(&self.args);
                c
            }
            Some(conf) => {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a confined skill's launch through `claw __sandbox`; the supervisor runs it"
                )]
                let mut c = crate::proc::Command::new(launcher);
                c.args(sandbox::launcher_args(
                    &conf.read,
                    &conf.write,
                    &self.program,
                    &self.args,
                ));
                c
            }
        };
        cmd.env_clear();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(&self.cwd);
        cmd
    }
}

/// `SKILL_<KEY>`: upper-cased, every character other than a letter or digit becomes `_`.
pub fn arg_env_name(key: &str) -> String {
    crate::params::env_key("SKILL_", key)
}

/// Finds `prog` on `path` (a PATH value); a name with a `/` is taken as a path.
pub fn which(prog: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path)
        .map(|d| d.join(prog))
        .find(|p| executable(p))
}

/// `claw --home H --root R skill run -- NAME KEY=VALUE...` in a child process: for cron jobs and
/// watcher actions, so a skill they start gets exactly what `claw skill run` gives it (its own
/// environment, vault grants, Landlock, log and `skill.run` audit entry).
pub fn cli_command<I>(
    dirs: &crate::config::Dirs,
    name: &str,
    args: I,
) -> std::io::Result<crate::proc::Command>
where
    I: IntoIterator<Item = (String, String)>,
{
    #[allow(
        clippy::disallowed_methods,
        reason = "`claw skill run` as a child, for skill jobs and watcher actions"
    )]
    let mut cmd = crate::proc::Command::new(std::env::current_exe()?);
    cmd.arg("--home")
        .arg(&dirs.home)
        .arg("--root")
        .arg(&dirs.root)
        .args(["skill", "run", "--"])
        .arg(name.trim());
    for (k, v) in args {
        cmd.arg(format!("{k}={v}"));
    }
    Ok(cmd)
}

/// Checks everything and builds the launch of `skill` with `args` (`k=v` pairs as given).
pub fn prepare(
    skill: &Skill,
    args: &[(String, String)],
    cx: &LaunchContext,
) -> Result<Launch, SkillError> {
    let name = skill.name().to_owned();
    let m = &skill.manifest;
    let script = skill.script_path();
    if !script.is_file() {
        return Err(SkillError::ScriptNotFound {
            skill: name,
            script,
        });
    }
    let path_var = cx.path_var();
    let missing: Vec<String> = m
        .dependencies
        .iter()
        .filter(|d| which(d, &path_var).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(SkillError::MissingDependencies {
            skill: name,
            missing,
        });
    }
    let (program, argv): (OsString, Vec<OsString>) = match skill.interpreter() {
        Some(interp) => {
            if which(interp, &path_var).is_none() {
                return Err(SkillError::MissingDependencies {
                    skill: name,
                    missing: vec![interp.to_owned()],
                });
            }
            (interp.into(), vec![script.clone().into_os_string()])
        }
        None => {
            if which(&script.display().to_string(), &path_var).is_none() {
                return Err(SkillError::Sandbox {
                    skill: name,
                    why: format!(
                        "{} is not executable (chmod +x it, or name it .sh or .py to run it with bash or python3)",
                        script.display()
                    ),
                });
            }
            (script.clone().into_os_string(), Vec::new())
        }
    };
    let bound = bind_args(m, args).map_err(|problems| SkillError::BadArgs {
        skill: name.clone(),
        problems,
    })?;

    // Later inserts win: manifest defaults < vault < arguments < claw's own variables.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &m.env {
        env.insert(k.clone(), v.clone());
    }
    let secrets = vault_values(skill, &cx.home)?;
    for (k, v) in &secrets {
        env.insert(k.clone(), v.expose().to_owned());
    }
    for (k, v) in &bound {
        env.insert(arg_env_name(k), v.clone());
    }
    for (k, v) in &cx.base_env {
        env.insert(k.clone(), v.clone());
    }
    env.entry("PATH".into()).or_insert(path_var.clone());
    if let Some(out) = &cx.outputs_path {
        env.insert("CLAW_OUTPUT".into(), out.display().to_string());
    }

    let confinement = match &m.paths {
        None => None,
        Some(paths) => Some(confinement(skill, paths, cx, &path_var)?),
    };
    Ok(Launch {
        skill: name,
        program,
        args: argv,
        env: env.into_iter().collect(),
        cwd: skill.dir.clone(),
        timeout: cx.timeout.unwrap_or_else(|| skill.timeout()),
        confinement,
        secrets: secrets.into_iter().map(|(_, v)| v).collect(),
    })
}

/// The launch of a workflow's skill step: the skill looked up in the config root and the data
/// directory, `args` already rendered, outputs to `outputs_path`.
pub fn prepare_step(
    dirs: &crate::config::Dirs,
    name: &str,
    timeout: Option<Duration>,
    args: &[(String, String)],
    outputs_path: &Path,
) -> Result<Launch, String> {
    let skill = super::find(dirs, name).map_err(|e| e.to_string())?;
    let mut cx = LaunchContext::from_process(&dirs.home);
    cx.outputs_path = Some(outputs_path.to_path_buf());
    cx.timeout = timeout;
    prepare(&skill, args, &cx).map_err(|e| e.to_string())
}

/// What keeps a skill from running on this machine, without running it (`claw workflow validate
/// --env`, `claw skill info`): a missing skill or script, dependencies not on PATH, `vault:KEY`
/// grants whose key is not in the vault, `paths:` that do not exist.
pub fn environment_problems(dirs: &crate::config::Dirs, name: &str) -> Vec<String> {
    let skill = match super::find(dirs, name) {
        Ok(s) => s,
        Err(e) => return vec![e.to_string()],
    };
    let cx = LaunchContext::from_process(&dirs.home);
    let mut out = Vec::new();
    let path_var = cx.path_var();
    if let Some(d) = skill.script_problem() {
        out.push(format!("skill `{name}`: {}", d.message));
    }
    let mut missing: Vec<String> = skill
        .manifest
        .dependencies
        .iter()
        .filter(|d| which(d, &path_var).is_none())
        .cloned()
        .collect();
    if let Some(i) = skill.interpreter()
        && which(i, &path_var).is_none()
        && !missing.iter().any(|m| m == i)
    {
        missing.push(i.to_owned());
    }
    if !missing.is_empty() {
        out.push(
            SkillError::MissingDependencies {
                skill: name.to_owned(),
                missing,
            }
            .to_string(),
        );
    }
    if let Err(e) = vault_values(&skill, &cx.home) {
        out.push(e.to_string());
    }
    if let Some(paths) = &skill.manifest.paths
        && let Err(e) = confinement(&skill, paths, &cx, &path_var)
    {
        out.push(e.to_string());
    }
    out
}

/// The vault values the manifest's permissions grant. `vault` with no vault yet grants nothing;
/// `vault:KEY` needs KEY to be there.
fn vault_values(skill: &Skill, home: &Path) -> Result<Vec<(String, Secret)>, SkillError> {
    let err = |why: String| SkillError::Vault {
        skill: skill.name().to_owned(),
        why,
    };
    let vault = Vault::new(home);
    match skill.manifest.vault_grant() {
        VaultGrant::Nothing => Ok(Vec::new()),
        VaultGrant::All => {
            if !vault.vault_path().exists() {
                return Ok(Vec::new());
            }
            let all = vault
                .all()
                .map_err(|e| err(format!("cannot read the vault: {e}")))?;
            Ok(all.into_iter().collect())
        }
        VaultGrant::Keys(keys) => {
            let mut out = Vec::new();
            for key in keys {
                match vault.get(&key) {
                    Ok(Some(v)) => out.push((key, v)),
                    Ok(None) => {
                        return Err(err(format!(
                            "its permission `vault:{key}` names a secret that is not in the vault (store it with `claw vault set {key}`)"
                        )));
                    }
                    Err(e) => {
                        return Err(err(format!("permission `vault:{key}`: {e}")));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Resolves `paths:` (relative to the skill's directory, `~/` to HOME) and adds what every
/// confined skill needs: the system directories, the skill's own directory, PATH's directories,
/// the outputs file.
fn confinement(
    skill: &Skill,
    paths: &super::manifest::Paths,
    cx: &LaunchContext,
    path_var: &str,
) -> Result<Confinement, SkillError> {
    let home = cx
        .base_env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| PathBuf::from(v));
    let resolve = |p: &str| -> PathBuf {
        if let (Some(rest), Some(h)) = (p.strip_prefix("~/"), &home) {
            return h.join(rest);
        }
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            skill.dir.join(path)
        }
    };
    let mut missing = Vec::new();
    let mut read: Vec<PathBuf> = Vec::new();
    let mut write: Vec<PathBuf> = Vec::new();
    for (list, out) in [(&paths.read, &mut read), (&paths.write, &mut write)] {
        for p in list {
            let abs = resolve(p);
            if abs.exists() {
                out.push(abs);
            } else {
                missing.push(abs.display().to_string());
            }
        }
    }
    if !missing.is_empty() {
        return Err(SkillError::Sandbox {
            skill: skill.name().to_owned(),
            why: format!(
                "`paths:` names what does not exist: {} (Landlock can only allow existing paths; create them first)",
                missing.join(", ")
            ),
        });
    }
    read.push(skill.dir.clone());
    read.extend(sandbox::SYSTEM_READ.iter().map(PathBuf::from));
    read.extend(std::env::split_paths(path_var).filter(|p| p.is_absolute()));
    write.extend(sandbox::SYSTEM_WRITE.iter().map(PathBuf::from));
    if let Some(out) = &cx.outputs_path {
        // Landlock rules hold on existing files: the outputs file is created (empty) up front.
        if let Err(e) = crate::fsutil::create_private(out) {
            return Err(SkillError::Sandbox {
                skill: skill.name().to_owned(),
                why: format!("cannot create {}: {e}", out.display()),
            });
        }
        write.push(out.clone());
    }
    read.sort();
    read.dedup();
    write.sort();
    write.dedup();
    Ok(Confinement { read, write })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(dir: &Path, extra: &str, script: &str) -> Skill {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(
            dir.join("skill.yaml"),
            format!("name: t\nversion: '1'\ndescription: d\nauthor: a\nscript: {script}\n{extra}"),
        )
        .expect("write");
        std::fs::write(dir.join(script), "echo hi\n").expect("write");
        Skill::load(dir).expect("valid")
    }

    fn cx(home: &Path) -> LaunchContext {
        LaunchContext {
            home: home.to_path_buf(),
            base_env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), "/nonexistent".into()),
            ],
            outputs_path: None,
            timeout: None,
        }
    }

    #[test]
    fn the_environment_is_built_from_nothing() {
        let t = tempfile::tempdir().expect("tmp");
        let s = skill(&t.path().join("s"), "env: {MODE: fast}\n", "run.sh");
        let l = prepare(&s, &[("target-host".into(), "h1".into())], &cx(t.path())).expect("ok");
        let keys: Vec<&str> = l.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["HOME", "MODE", "PATH", "SKILL_TARGET_HOST"]);
        assert_eq!(l.program, "bash");
        assert_eq!(l.args, [s.dir.join("run.sh").into_os_string()]);
        assert_eq!(l.timeout, super::super::DEFAULT_TIMEOUT);
        assert!(l.confinement.is_none());
    }

    #[test]
    fn missing_dependencies_stop_the_launch() {
        let t = tempfile::tempdir().expect("tmp");
        let s = skill(
            &t.path().join("s"),
            "dependencies: [sh, no-such-tool-xyz, nor-this-one]\n",
            "run.sh",
        );
        let e = prepare(&s, &[], &cx(t.path())).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "skill `t`: missing dependencies: no-such-tool-xyz, nor-this-one (not on PATH)"
        );
    }

    #[test]
    fn a_vault_key_permission_needs_the_key() {
        let t = tempfile::tempdir().expect("tmp");
        let s = skill(
            &t.path().join("s"),
            "permissions: [vault:API_TOKEN]\n",
            "run.sh",
        );
        let e = prepare(&s, &[], &cx(t.path())).expect_err("no vault");
        assert!(e.to_string().contains("vault"), "{e}");
    }

    #[test]
    fn confinement_resolves_paths_and_refuses_missing_ones() {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(t.path().join("s/data")).expect("mkdir");
        let s = skill(
            &t.path().join("s"),
            "paths: {read: [data], write: [/tmp]}\n",
            "run.sh",
        );
        let l = prepare(&s, &[], &cx(t.path())).expect("ok");
        let c = l.confinement.expect("confined");
        assert!(c.read.contains(&s.dir.join("data")));
        assert!(c.read.contains(&s.dir));
        assert!(c.write.contains(&PathBuf::from("/tmp")));
        let s = skill(&t.path().join("s2"), "paths: {read: [nope]}\n", "run.sh");
        let e = prepare(&s, &[], &cx(t.path())).expect_err("missing");
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
