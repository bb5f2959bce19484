//! The copy of a step's log kept in a shared store (PostgreSQL, docs/scale-out.md), so that
//! `claw run logs` and the dashboard show the logs of runs executed on other machines.
//!
//! Every step kind already writes its log file through its own path (the supervisor's capped,
//! rotated file for commands and skills; whole files for ssh, browser and http steps; a journal
//! for llm steps), masked by the run's redactor. Rather than teach each writer about the
//! database, the engine copies what the file gains: every [`EVERY`] while the step runs and once
//! when it ends, one statement per copy (never a round trip per line), so the store holds
//! exactly the masked bytes of the file. The file stays the buffer: a copy that fails (the
//! server restarting) is retried from the same offset at the next tick, without memory growing.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::steps::StepInput;
use crate::store::Store;

/// How often a running step's new output is copied.
pub(super) const EVERY: Duration = Duration::from_millis(500);

/// Copies what one attempt appends to its step's log file into the store.
pub(super) struct LogCopy {
    store: Arc<dyn Store>,
    run_id: String,
    step: String,
    path: PathBuf,
    cap: u64,
    /// How far the file was copied. Starts at the file's end before the attempt: earlier
    /// attempts (on this machine) were copied by their own `LogCopy`.
    at: Position,
    /// Whether a failure was already reported (once per attempt, not at every tick).
    warned: bool,
}

/// Where the copied part of the log ends: an offset in the file, and which files (inodes) the
/// log and its rotated `.1` were, to tell when the file was rotated.
#[derive(Debug, Clone, Copy)]
struct Position {
    offset: u64,
    file: Option<u64>,
    rotated: Option<u64>,
}

fn inode(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// `<log>.1`, where the log rotates to.
fn rotated_path(path: &std::path::Path) -> PathBuf {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    PathBuf::from(old)
}

impl LogCopy {
    pub(super) fn new(store: Arc<dyn Store>, input: &StepInput) -> Self {
        let path = input.log_path.clone();
        let at = Position {
            offset: std::fs::metadata(&path).map_or(0, |m| m.len()),
            file: inode(&path),
            rotated: inode(&rotated_path(&path)),
        };
        Self {
            store,
            run_id: input.run_id.clone(),
            step: input.step.clone(),
            path,
            cap: input.max_log_bytes,
            at,
            warned: false,
        }
    }

    /// Runs `work` (the attempt), copying the log while it runs and what is left once it ends,
    /// before returning its output: a step recorded as finished has its whole log in the store.
    pub(super) async fn around<T>(self, work: impl Future<Output = T>) -> T {
        let stop = CancellationToken::new();
        // Also when this future is dropped unfinished (the step's task aborted): the copier
        // then makes its last copy and ends, instead of ticking forever.
        let stopped = stop.clone().drop_guard();
        let copier = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut this = self;
                loop {
                    let last = tokio::select! {
                        () = stop.cancelled() => true,
                        () = tokio::time::sleep(EVERY) => false,
                    };
                    // File reads and the store's calls block: off the runtime's threads.
                    match tokio::task::spawn_blocking(move || {
                        this.copy(last);
                        this
                    })
                    .await
                    {
                        Ok(t) => this = t,
                        Err(_) => return,
                    }
                    if last {
                        return;
                    }
                }
            })
        };
        let out = work.await;
        drop(stopped);
        let _ = copier.await;
        out
    }

    /// Copies what the file gained since the last copy (`last`: the attempt has ended, so a
    /// character cut at the end of the file is complete as it is).
    fn copy(&mut self, last: bool) {
        let (bytes, next) = self.read_new(last);
        if bytes.is_empty() {
            self.at = next;
            return;
        }
        let text = String::from_utf8_lossy(&bytes);
        match self
            .store
            .append_step_log(&self.run_id, &self.step, &text, self.cap)
        {
            Ok(()) => self.at = next,
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(run = %self.run_id, step = %self.step, error = %e, "cannot copy the step's log to the store; retrying");
                }
            }
        }
    }

    /// The bytes after the copied part (at most `cap` of them: older ones would be dropped from
    /// the store anyway), and the position after them. When a new `.1` has appeared, the file
    /// being read was rotated: the rest of `.1` (when it is that file), then the new file from
    /// its start. A file shorter than the offset was rewritten: read from its start.
    fn read_new(&self, last: bool) -> (Vec<u8>, Position) {
        let old = rotated_path(&self.path);
        let rotated = inode(&old);
        let file = inode(&self.path);
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let mut out = Vec::new();
        let mut from = self.at.offset;
        if rotated.is_some() && rotated != self.at.rotated {
            if self.at.file.is_none() || self.at.file == rotated {
                read_range(&old, from, u64::MAX, &mut out);
            }
            from = 0;
        } else if len < from {
            from = 0;
        }
        let from = from.max(len.saturating_sub(self.cap));
        read_range(&self.path, from, len, &mut out);
        let mut next = Position {
            offset: len,
            file,
            rotated,
        };
        if !last {
            // Held back only from what this file holds (the offset stays inside it).
            let held =
                (out.len() - whole_chars(&out)).min(usize::try_from(len - from).unwrap_or(0));
            next.offset -= held as u64;
            out.truncate(out.len() - held);
        }
        if out.len() as u64 > self.cap {
            let cut = out.len() - usize::try_from(self.cap).unwrap_or(out.len());
            out.drain(..cut);
        }
        (out, next)
    }
}

/// Appends `path`'s bytes from `from` to `to` (or its end) to `out`; nothing if it is unreadable.
fn read_range(path: &std::path::Path, from: u64, to: u64, out: &mut Vec<u8>) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    if to <= from || f.seek(SeekFrom::Start(from)).is_err() {
        return;
    }
    let _ = f.take(to - from).read_to_end(out);
}

/// How many of `buf`'s bytes end with a whole UTF-8 character: a character whose last bytes
/// are not written yet is left for the next copy.
fn whole_chars(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(4) {
        let b = buf[buf.len() - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let width = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if width > back {
            buf.len() - back
        } else {
            buf.len()
        };
    }
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::whole_chars;

    #[test]
    fn a_character_cut_at_the_end_waits_for_its_last_bytes() {
        let e = "é".as_bytes(); // 0xC3 0xA9
        assert_eq!(whole_chars(b"ab"), 2);
        assert_eq!(whole_chars(&[b'a', e[0]]), 1);
        assert_eq!(whole_chars(&[b'a', e[0], e[1]]), 3);
        let euro = "€".as_bytes(); // three bytes
        assert_eq!(whole_chars(&[b'x', euro[0], euro[1]]), 1);
        assert_eq!(whole_chars(euro), 3);
        assert_eq!(whole_chars(&[]), 0);
        // Stray continuation bytes are left to the lossy decoding.
        assert_eq!(whole_chars(&[0x80, 0x80, 0x80, 0x80, 0x80]), 5);
    }
}
