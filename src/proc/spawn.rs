//! Starting a supervised process: [`Command`] says what to run, [`spawn`] starts it the way
//! glibc's `posix_spawn` does (`clone(CLONE_VM | CLONE_VFORK)`, then `execve` in the child, with
//! the calling thread suspended until then), without the work `posix_spawn` and std's
//! `Command::spawn` do around it at every start: a copy of the whole environment into a map and
//! back (std), a stack mapped and unmapped, 128 `rt_sigaction` calls and six `getrlimit` calls
//! (glibc). Those were a tenth of what a short step cost claw beyond the process itself.
//!
//! The child gets: its own process group, stdin from a pipe or `/dev/null`, stdout and stderr
//! into pipes, the working directory and environment of its [`Command`], an empty signal mask,
//! and SIGPIPE and every signal claw catches back at their default action (signals claw ignores
//! stay ignored, as `posix_spawn` leaves them). Every other descriptor of claw's is close-on-exec.

use std::ffi::{CString, OsStr, OsString, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// What to run: a program, its arguments, its environment (claw's own unless cleared, with the
/// changes made here, in order) and its working directory (claw's unless set). The names follow
/// `std::process::Command`.
#[derive(Debug, Clone)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
}

impl Command {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts from an empty environment instead of claw's.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The value the process gets for `key` (`None`: unset).
    fn get_env(&self, key: &str) -> Option<OsString> {
        let set = self.env.iter().rev().find(|(k, _)| k == key);
        match set {
            Some((_, v)) => v.clone(),
            None if self.env_clear => None,
            None => crate::config::env::inherited(key),
        }
    }

    /// The process's whole environment, as `KEY=value` strings.
    fn environment(&self) -> io::Result<Vec<CString>> {
        let mut vars: Vec<(OsString, OsString)> = if self.env_clear {
            Vec::new()
        } else {
            crate::config::env::inherited_all()
        };
        for (k, v) in &self.env {
            let at = vars.iter().position(|(have, _)| have == k);
            match (v, at) {
                (Some(v), Some(i)) => vars[i].1.clone_from(v),
                (Some(v), None) => vars.push((k.clone(), v.clone())),
                (None, Some(i)) => {
                    vars.remove(i);
                }
                (None, None) => {}
            }
        }
        vars.into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                c_string(kv)
            })
            .collect()
    }

    /// The file to execute: the program itself when its name has a `/`, else the first
    /// executable file of that name in the process's `PATH` (claw's, unless the command sets
    /// one), as `execvp` looks it up.
    fn executable(&self) -> io::Result<PathBuf> {
        if self.program.as_bytes().contains(&b'/') {
            return Ok(PathBuf::from(&self.program));
        }
        let path = self
            .get_env("PATH")
            .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
        let mut denied = false;
        for dir in std::env::split_paths(&path) {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            let candidate = dir.join(&self.program);
            match nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK) {
                Ok(()) if candidate.is_file() => return Ok(candidate),
                Ok(()) => {}
                Err(nix::errno::Errno::EACCES) => denied |= candidate.is_file(),
                Err(_) => {}
            }
        }
        Err(io::Error::from_raw_os_error(if denied {
            libc::EACCES
        } else {
            libc::ENOENT
        }))
    }
}

fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a program, argument or environment variable holds a NUL byte",
        )
    })
}

/// A started process and claw's ends of its pipes.
#[derive(Debug)]
pub(super) struct Child {
    pid: Pid,
    exit: Exit,
    status: Option<ExitStatus>,
    pub(super) stdin: Option<pipe::Sender>,
    pub(super) stdout: Option<pipe::Receiver>,
    pub(super) stderr: Option<pipe::Receiver>,
}

impl Child {
    /// The process's id (and its process group's).
    pub(super) fn id(&self) -> Pid {
        self.pid
    }

    /// Waits for the process to exit and reaps it (at once when it already was). Cancel-safe:
    /// a wait dropped before the end leaves the next one to go on.
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        let pid = self.pid;
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            match &mut self.exit {
                Exit::Pidfd(fd) => {
                    let mut ready = fd.readable().await?;
                    match reap(pid)? {
                        Some(status) => self.status = Some(status),
                        None => ready.clear_ready(),
                    }
                }
                Exit::Thread(waiter) => {
                    let waiter = waiter.get_or_insert_with(|| {
                        tokio::task::spawn_blocking(move || reap_blocking(pid))
                    });
                    let status = waiter.await.map_err(io::Error::other)??;
                    self.status = Some(status);
                }
            }
        }
    }
}

/// How claw learns that a process has exited.
#[derive(Debug)]
enum Exit {
    /// Its pidfd turns readable (`pidfd_open`, Linux 5.3 and later).
    Pidfd(AsyncFd<OwnedFd>),
    /// Where there is no pidfd (an older kernel, valgrind): a blocking thread's `waitpid`, made
    /// by the first wait.
    Thread(Option<tokio::task::JoinHandle<io::Result<ExitStatus>>>),
}

/// Waits for `pid` to exit and reaps it.
fn reap_blocking(pid: Pid) -> io::Result<ExitStatus> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::from_raw((code & 0xff) << 8)),
            Ok(WaitStatus::Signaled(_, signal, core)) => {
                return Ok(ExitStatus::from_raw(
                    signal as i32 | if core { 0x80 } else { 0 },
                ));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reaps `pid` if it has exited: how it ended.
fn reap(pid: Pid) -> io::Result<Option<ExitStatus>> {
    let raw = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => (code & 0xff) << 8,
        Ok(WaitStatus::Signaled(_, signal, core)) => signal as i32 | if core { 0x80 } else { 0 },
        Ok(_) | Err(nix::errno::Errno::EINTR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(ExitStatus::from_raw(raw)))
}

impl Drop for Child {
    fn drop(&mut self) {
        // A process whose supervision was dropped before it ended is still reaped, by a thread
        // that waits for it, so that it does not stay a zombie for the rest of claw's life (a
        // blocking waiter already started does that itself).
        if self.status.is_none()
            && !matches!(self.exit, Exit::Thread(Some(_)))
            && !matches!(reap(self.pid), Ok(Some(_)))
        {
            let pid = self.pid;
            let _ = std::thread::Builder::new()
                .name("claw-reap".into())
                .spawn(move || while let Err(nix::errno::Errno::EINTR) = waitpid(pid, None) {});
        }
    }
}

/// `/dev/null`, opened once (close-on-exec): the stdin of every process that gets no input.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<io::Result<OwnedFd>> = OnceLock::new();
    match NULL.get_or_init(|| {
        std::fs::OpenOptions::new()
            .read(true)
            .open("/dev/null")
            .map(OwnedFd::from)
    }) {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot open /dev/null: {e}"),
        )),
    }
}

/// A pipe whose ends are both close-on-exec: (read, write).
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Starts `cmd` in a process group of its own, stdin from a pipe (`stdin`) or `/dev/null`,
/// stdout and stderr into pipes.
pub(super) fn spawn(cmd: &Command, stdin: bool) -> io::Result<Child> {
    let file = c_string(cmd.executable()?.into_os_string().into_vec())?;
    let mut argv = vec![c_string(cmd.program.as_bytes().to_vec())?];
    for a in &cmd.args {
        argv.push(c_string(a.as_bytes().to_vec())?);
    }
    let envp = cmd.environment()?;
    let cwd = match &cmd.cwd {
        Some(d) => Some(c_string(d.as_os_str().as_bytes().to_vec())?),
        None => None,
    };
    let (in_read, in_write) = if stdin {
        let (r, w) = pipe_pair()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (out_read, out_write) = pipe_pair()?;
    let (err_read, err_write) = pipe_pair()?;
    let stdin_fd = match &in_read {
        Some(r) => r.as_raw_fd(),
        None => dev_null()?,
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let args = ChildArgs {
        file: file.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        fds: [stdin_fd, out_write.as_raw_fd(), err_write.as_raw_fd()],
        error: AtomicI32::new(0),
    };
    let (pid, pidfd) = start(&args)?;
    // The child's ends are its own now.
    drop((in_read, out_write, err_write));
    let exit = match pidfd {
        Some(pidfd) => {
            // SAFETY: `pidfd` is an open descriptor owned by the `OwnedFd` that the `AsyncFd`
            // takes and keeps until it is dropped; nothing closes or replaces it meanwhile.
            #[allow(unsafe_code)]
            let registered =
                unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
            match registered {
                Ok(fd) => Exit::Pidfd(fd),
                Err(_) => Exit::Thread(None),
            }
        }
        None => Exit::Thread(None),
    };
    let mut child = Child {
        pid,
        exit,
        status: None,
        stdin: None,
        stdout: None,
        stderr: None,
    };
    // From here a failure drops `child`, which reaps the process once it ends.
    for fd in [&out_read, &err_read].into_iter().chain(in_write.as_ref()) {
        nonblocking(fd)?;
    }
    child.stdout = Some(pipe::Receiver::from_owned_fd_unchecked(out_read)?);
    child.stderr = Some(pipe::Receiver::from_owned_fd_unchecked(err_read)?);
    if let Some(w) = in_write {
        child.stdin = Some(pipe::Sender::from_owned_fd_unchecked(w)?);
    }
    Ok(child)
}

/// What the child needs, prepared by the parent: the child must not allocate (another thread of
/// claw may hold the allocator's lock) nor touch anything but this.
struct ChildArgs {
    file: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Null: claw's own.
    cwd: *const libc::c_char,
    /// The child's stdin, stdout and stderr.
    fds: [RawFd; 3],
    /// The errno of the step that failed before `execve` succeeded (0: it succeeded).
    error: AtomicI32,
}

/// The child's stack: it only calls a few libc wrappers of system calls.
const CHILD_STACK: usize = 64 * 1024;

/// Clones the calling thread into a child that shares claw's memory and runs [`child`] on a
/// stack of its own, while this thread waits until the child has called `execve` or exited.
/// Every signal is blocked meanwhile (in the child too, until it has reset what it must), so
/// that no handler of claw's runs in the child.
#[allow(unsafe_code)]
fn start(args: &ChildArgs) -> io::Result<(Pid, Option<OwnedFd>)> {
    // Not zeroed (the child writes its stack before reading it): zeroing 64 KiB at every start
    // was 2.6 M of a 40-step run's 30 M instructions.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    // The stack grows down from its end, 16-byte aligned as the ABI wants.
    let top = {
        let end = stack.spare_capacity_mut().as_mut_ptr_range().end as usize;
        (end & !15) as *mut c_void
    };
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    // SAFETY: `child` is an `extern "C" fn` that only reads `args` and writes its atomic
    // `error`, through the pointer passed here. `args` and every pointer in it (strings and
    // arrays owned by `spawn`'s frame) stay valid until the child has exec'd or exited, because
    // CLONE_VFORK suspends this thread until then. `top` is the aligned end of `stack`'s spare
    // capacity, a live allocation of CHILD_STACK bytes that nothing else uses while the child
    // runs.
    let pid = unsafe {
        libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(args).cast_mut().cast::<c_void>(),
        )
    };
    let cloned = io::Error::last_os_error();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    drop(stack);
    if pid == -1 {
        return Err(cloned);
    }
    let pid = Pid::from_raw(pid);
    if let errno @ 1.. = args.error.load(Ordering::Acquire) {
        // It exited with 127 before running anything: reap it.
        let _ = waitpid(pid, None);
        return Err(io::Error::from_raw_os_error(errno));
    }
    // A pidfd, even if the process has already exited (it is not reaped yet, so the pid is still
    // the child's). Not CLONE_PIDFD: valgrind, which runs the link-order script, refuses it (and
    // has no pidfd_open either: then the wait is a blocking thread's, see `Exit`).
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1; it touches no
    // memory of this process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    match c_int::try_from(fd) {
        // SAFETY: a descriptor `pidfd_open` just returned, which nothing else owns.
        Ok(fd @ 0..) => Ok((pid, Some(unsafe { OwnedFd::from_raw_fd(fd) }))),
        _ => Ok((pid, None)),
    }
}

/// The child: signal dispositions, process group, stdin/stdout/stderr, directory, signal mask,
/// then `execve`. Only system call wrappers from here: no allocation, no lock, no unwinding.
#[allow(unsafe_code)]
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&ChildArgs` that `start` passed; the parent thread keeps it alive
    // and unchanged until this child execs or exits (CLONE_VFORK).
    let args = unsafe { &*arg.cast::<ChildArgs>() };
    let fail = |args: &ChildArgs| -> c_int {
        args.error.store(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL),
            Ordering::Release,
        );
        // SAFETY: `_exit` ends this process without running anything of claw's.
        unsafe { libc::_exit(127) }
    };
    // SAFETY (the block): each call is a libc wrapper of one system call, given pointers to
    // live locals or to what `args` points at; all signals are blocked, so no handler runs.
    unsafe {
        // Signals claw catches go back to their default action, and SIGPIPE too (claw ignores
        // it; std does the same for the processes it starts). Ignored ones stay ignored. glibc's
        // own two (32 and 33) are left: glibc refuses to change them, and their handlers act only
        // on a signal sent by the process itself, which this child's never are.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in (1..32).chain(34..=64) {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut cur: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &raw mut cur) == 0
                && (sig == libc::SIGPIPE
                    || (cur.sa_sigaction != libc::SIG_DFL && cur.sa_sigaction != libc::SIG_IGN))
            {
                libc::sigaction(sig, &raw const dfl, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(args);
        }
        for (target, &fd) in args.fds.iter().enumerate() {
            // Every source is at 3 or above (claw keeps 0, 1 and 2 open), so dup2 makes a copy
            // without close-on-exec and no source is overwritten before it is copied.
            if libc::dup2(fd, target as c_int) == -1 {
                return fail(args);
            }
        }
        if !args.cwd.is_null() && libc::chdir(args.cwd) != 0 {
            return fail(args);
        }
        let empty: libc::sigset_t = {
            let mut s = std::mem::zeroed();
            libc::sigemptyset(&raw mut s);
            s
        };
        libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
        libc::execve(args.file, args.argv, args.envp);
    }
    fail(args)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods, reason = "processes under test")]
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Runs `cmd` (with `input` on its stdin when given): its exit status, stdout and stderr.
    fn run(cmd: &Command, input: Option<&str>) -> io::Result<(ExitStatus, String, String)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut child = spawn(cmd, input.is_some())?;
            if let (Some(mut w), Some(text)) = (child.stdin.take(), input) {
                w.write_all(text.as_bytes()).await?;
            }
            let (mut out, mut err) = (String::new(), String::new());
            if let Some(mut r) = child.stdout.take() {
                r.read_to_string(&mut out).await?;
            }
            if let Some(mut r) = child.stderr.take() {
                r.read_to_string(&mut err).await?;
            }
            Ok((child.wait().await?, out, err))
        })
    }

    #[test]
    fn the_environment_is_claws_with_the_commands_changes_in_order() {
        let mut cmd = Command::new("/usr/bin/env");
        cmd.env("CLAW_SPAWN_A", "1")
            .env("CLAW_SPAWN_B", "x")
            .env("CLAW_SPAWN_A", "2")
            .env_remove("CLAW_SPAWN_B")
            .env_remove("HOME");
        let (status, out, _) = run(&cmd, None).unwrap();
        assert!(status.success());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("CLAW_SPAWN_A="))
                .count(),
            1
        );
        assert!(lines.contains(&"CLAW_SPAWN_A=2"), "{out}");
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("CLAW_SPAWN_B=") || l.starts_with("HOME="))
        );
        assert!(
            lines.iter().any(|l| l.starts_with("PATH=")),
            "claw's PATH is inherited"
        );

        let mut clear = Command::new("/usr/bin/env");
        clear.env("BEFORE", "gone").env_clear().env("ONLY", "this");
        let (_, out, _) = run(&clear, None).unwrap();
        assert_eq!(out, "ONLY=this\n");
    }

    #[test]
    fn a_name_is_looked_up_in_the_commands_path() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hello");
        std::fs::write(&script, "#!/bin/sh\necho \"hi $1\"\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let path = format!("/nonexistent:{}:/bin", dir.path().display());

        let mut cmd = Command::new("hello");
        cmd.arg("there").env("PATH", &path);
        let (status, out, _) = run(&cmd, None).unwrap();
        assert!(status.success());
        assert_eq!(out, "hi there\n");

        let mut missing = Command::new("no-such-program-anywhere");
        missing.env("PATH", &path);
        let e = run(&missing, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");

        let mut denied = Command::new("plain");
        denied.env("PATH", &path);
        let e = run(&denied, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");

        // A path is executed as given: execve's own error comes back.
        let e = run(&Command::new(&plain), None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let e = run(&Command::new(dir.path().join("absent")), None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");

        let mut nul = Command::new("/bin/echo");
        nul.arg("a\0b");
        let e = run(&nul, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn the_child_starts_in_its_group_and_directory_with_signals_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/bin/sh");
        // pid, process group, directory, and the signal state `cat` was started with.
        cmd.args([
            "-c",
            "read -r pid _ _ _ group _ < /proc/$$/stat; echo \"$pid $group\"; pwd; \
             exec cat /proc/self/status",
        ])
        .current_dir(dir.path());
        let (status, out, err) = run(&cmd, None).unwrap();
        assert!(status.success(), "{err}");
        let mut lines = out.lines();
        let ids: Vec<&str> = lines.next().unwrap().split(' ').collect();
        assert_eq!(ids[0], ids[1], "the process leads a group of its own");
        assert_eq!(
            std::fs::canonicalize(lines.next().unwrap()).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                .unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "no signal blocked");
        // claw (and this test binary) ignores SIGPIPE; its processes do not.
        assert_eq!(field("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0);

        let e = run(
            Command::new("/bin/true").current_dir(dir.path().join("gone")),
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn stdin_is_the_given_text_or_nothing() {
        let (status, out, _) = run(&Command::new("/bin/cat"), Some("some input\n")).unwrap();
        assert!(status.success());
        assert_eq!(out, "some input\n");
        let (_, out, _) = run(&Command::new("/bin/cat"), None).unwrap();
        assert_eq!(out, "");
    }

    /// Without a pidfd (an old kernel, valgrind) a blocking thread waits, and a wait given up
    /// before the end leaves the next one to go on.
    #[test]
    fn a_wait_without_a_pidfd_and_a_wait_given_up() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for pidfd in [true, false] {
            let status = rt.block_on(async {
                let mut cmd = Command::new("/bin/sh");
                cmd.args(["-c", "sleep 0.3; exit 4"]);
                let mut child = spawn(&cmd, false).unwrap();
                if !pidfd {
                    child.exit = Exit::Thread(None);
                }
                let early =
                    tokio::time::timeout(std::time::Duration::from_millis(20), child.wait()).await;
                assert!(early.is_err(), "it had not exited yet");
                child.wait().await.unwrap()
            });
            assert_eq!(status.code(), Some(4), "pidfd: {pidfd}");
        }
    }

    #[test]
    fn exit_codes_and_signals_come_back() {
        let mut code = Command::new("/bin/sh");
        code.args(["-c", "echo out; echo err >&2; exit 3"]);
        let (status, out, err) = run(&code, None).unwrap();
        assert_eq!(
            (status.code(), out.as_str(), err.as_str()),
            (Some(3), "out\n", "err\n")
        );
        let mut killed = Command::new("/bin/sh");
        killed.args(["-c", "kill -TERM $$"]);
        let (status, _, _) = run(&killed, None).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
}
