//! Landlock confinement of skills that declare `paths:`.
//!
//! claw never calls `pre_exec` (that would need `unsafe`): a confined skill is started as
//! `claw __sandbox --read P… --write P… -- PROGRAM ARGS…`, a tiny launcher that restricts itself
//! with Landlock (inherited by everything it starts) and then replaces itself with the program.
//! The launcher is the process claw spawned, so it keeps the process group, the pipes and the
//! stripped environment of the skill.
//!
//! Support is probed by confining a throwaway thread: Landlock (without `all_threads`) applies to
//! the calling thread only, so the probe tells exactly what a launcher would get and leaves claw
//! itself untouched.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, LandlockStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
};

/// The newest Landlock ABI claw asks for; older kernels enforce what they can.
const TARGET_ABI: ABI = ABI::V9;

/// What the running kernel gives a confined skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Every access right claw asks for is enforced.
    Full { abi: i32 },
    /// File reads and writes are confined; rights newer than the kernel's ABI are not.
    Partial { abi: i32 },
    /// No confinement at all.
    NotAvailable { why: String },
}

impl Support {
    /// One word: `full`, `partial` or `not available`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Full { .. } => "full",
            Self::Partial { .. } => "partial",
            Self::NotAvailable { .. } => "not available",
        }
    }

    pub fn is_available(&self) -> bool {
        !matches!(self, Self::NotAvailable { .. })
    }

    /// A sentence for `claw skill info` and `claw doctor`.
    pub fn describe(&self) -> String {
        match self {
            Self::Full { abi } => format!(
                "full (Landlock ABI {abi}): skills with `paths:` can only touch those paths"
            ),
            Self::Partial { abi } => format!(
                "partial (Landlock ABI {abi}, claw asks for {}): reading, writing and executing files are confined to `paths:`; rights added in later ABIs (such as reaching Unix sockets by path) are not",
                TARGET_ABI as i32
            ),
            Self::NotAvailable { why } => {
                format!("not available ({why}): skills with `paths:` run WITHOUT file confinement")
            }
        }
    }
}

fn abi_number(status: &LandlockStatus) -> i32 {
    match status {
        LandlockStatus::Available {
            kernel_abi: Some(n),
            ..
        } => *n,
        LandlockStatus::Available { effective_abi, .. } => *effective_abi as i32,
        _ => 0,
    }
}

fn not_available_reason(status: &LandlockStatus) -> String {
    match status {
        LandlockStatus::NotEnabled => {
            "the kernel has Landlock but it is not enabled (add `landlock` to the `lsm=` boot parameter)".into()
        }
        LandlockStatus::NotImplemented => "the kernel is built without Landlock".into(),
        _ => "the ruleset could not be enforced".into(),
    }
}

fn ruleset() -> Result<landlock::RulesetCreated, landlock::RulesetError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET_ABI))?
        .create()
}

/// Probes the kernel by confining a short-lived thread.
pub fn detect() -> Support {
    let probe = std::thread::spawn(|| -> Result<Support, String> {
        let status = ruleset()
            .and_then(landlock::RulesetCreated::restrict_self)
            .map_err(|e| e.to_string())?;
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => Support::Full {
                abi: abi_number(&status.landlock),
            },
            RulesetStatus::PartiallyEnforced => Support::Partial {
                abi: abi_number(&status.landlock),
            },
            RulesetStatus::NotEnforced => Support::NotAvailable {
                why: not_available_reason(&status.landlock),
            },
        })
    });
    match probe.join() {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => Support::NotAvailable { why: e },
        Err(_) => Support::NotAvailable {
            why: "the probe failed".into(),
        },
    }
}

/// Paths every confined skill may read (and execute): the system's programs, libraries and
/// configuration, and `/proc` (Landlock keeps a confined process from inspecting processes
/// outside its domain, so other processes' environments stay out of reach).
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/proc",
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
];

/// Paths every confined skill may write.
pub const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// The launcher's arguments: `--read P … --write P … -- PROGRAM ARGS…`.
pub fn launcher_args(
    read: &[PathBuf],
    write: &[PathBuf],
    program: &OsString,
    args: &[OsString],
) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["__sandbox".into()];
    for p in read {
        out.push("--read".into());
        out.push(p.clone().into_os_string());
    }
    for p in write {
        out.push("--write".into());
        out.push(p.clone().into_os_string());
    }
    out.push("--".into());
    out.push(program.clone());
    out.extend(args.iter().cloned());
    out
}

/// Landlock confines reading and writing, not a file's metadata: a skill could still `chmod` the
/// vault identity world-readable, `chown` a file or back-date it. A seccomp filter (inherited by
/// everything the skill starts, and never removable) makes those calls fail with EPERM: every
/// `chmod`/`chown` family call, and `utime`/`utimes`/`utimensat` with explicit times (`touch`
/// setting the current time still works).
fn forbid_metadata_changes() -> Result<(), String> {
    use std::collections::BTreeMap;

    use nix::libc;
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    /// fchmodat2 (Linux 6.6): one number on every architecture.
    const SYS_FCHMODAT2: i64 = 452;
    let times_given = |arg: u8| -> Result<Vec<SeccompRule>, String> {
        let c = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, 0)
            .map_err(|e| e.to_string())?;
        Ok(vec![SeccompRule::new(vec![c]).map_err(|e| e.to_string())?])
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for always in [
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        SYS_FCHMODAT2,
        libc::SYS_fchown,
        libc::SYS_fchownat,
    ] {
        rules.insert(always, Vec::new());
    }
    rules.insert(libc::SYS_utimensat, times_given(2)?);
    #[cfg(target_arch = "x86_64")]
    {
        for always in [libc::SYS_chmod, libc::SYS_chown, libc::SYS_lchown] {
            rules.insert(always, Vec::new());
        }
        rules.insert(libc::SYS_utime, times_given(1)?);
        rules.insert(libc::SYS_utimes, times_given(1)?);
        rules.insert(libc::SYS_futimesat, times_given(2)?);
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

/// Whether the metadata filter works here: applied in a throwaway thread (a seccomp filter
/// without TSYNC binds the calling thread only), which then tries to `chmod` a file of its own.
pub fn metadata_filter_works() -> Result<(), String> {
    let probe = std::thread::spawn(|| -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::temp_dir().join(format!(
            ".claw-seccomp-probe-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::File::create(&path).map_err(|e| e.to_string())?;
        let result = forbid_metadata_changes().and_then(|()| {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)) {
                Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => Ok(()),
                Err(e) => Err(format!("chmod failed otherwise: {e}")),
                Ok(()) => Err("chmod was not refused".to_owned()),
            }
        });
        let _ = std::fs::remove_file(&path);
        result
    });
    probe
        .join()
        .unwrap_or_else(|_| Err("the probe thread failed".to_owned()))
}

/// The launcher (`claw __sandbox`): confines this process to `read` and `write`, then executes
/// `program`. Returns only on failure, with the exit status to use (126 as a shell does when it
/// cannot execute a command, 127 when the program is not found).
pub fn launch(read: &[PathBuf], write: &[PathBuf], program: &OsString, args: &[OsString]) -> u8 {
    use std::os::unix::process::CommandExt as _;
    let existing = |list: &[PathBuf]| -> Vec<PathBuf> {
        list.iter().filter(|p| p.exists()).cloned().collect()
    };
    let result = ruleset()
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                existing(read),
                AccessFs::from_read(TARGET_ABI),
            ))
        })
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                existing(write),
                AccessFs::from_all(TARGET_ABI),
            ))
        })
        .and_then(landlock::RulesetCreated::restrict_self);
    match result {
        Ok(status) if status.ruleset == RulesetStatus::NotEnforced => {
            eprintln!(
                "claw: warning: Landlock {}; the skill runs without file confinement",
                not_available_reason(&status.landlock)
            );
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("claw: cannot confine the skill with Landlock: {e}");
            return 126;
        }
    }
    if let Err(e) = forbid_metadata_changes() {
        eprintln!("claw: cannot forbid mode, owner and time changes to the skill: {e}");
        return 126;
    }
    // exec only returns on failure.
    #[allow(
        clippy::disallowed_methods,
        reason = "the sandbox launcher execs the skill after confining itself"
    )]
    let err = std::process::Command::new(program).args(args).exec();
    eprintln!("claw: cannot start {}: {err}", Path::new(program).display());
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}
