//! An `ssh` step's journal: the hosts of an attempt, then one line per host as its command
//! ends (exit code or error), each synced to disk. After a crash, the decision on the
//! interrupted step names the hosts that had finished (and how) and those that had not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Host, Output};

/// Where an attempt logged at `log` keeps its journal (`<base>.log` → `<base>.hosts.jsonl`).
pub fn path_for(log: &Path) -> PathBuf {
    log.with_extension("hosts.jsonl")
}

/// An open journal; appends are synced.
#[derive(Debug)]
pub struct Journal {
    file: Mutex<std::fs::File>,
}

impl Journal {
    /// Starts the journal of an attempt on `hosts` (a previous attempt's is replaced).
    pub fn create(path: &Path, hosts: &[Host]) -> std::io::Result<Self> {
        let aliases: Vec<&str> = hosts.iter().map(|h| h.alias.as_str()).collect();
        Self::create_for(path, &aliases)
    }

    fn create_for(path: &Path, aliases: &[&str]) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        writeln!(file, "{}", serde_json::json!({ "hosts": aliases }))?;
        file.sync_data()?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Records that `host`'s command ended (blocking: it syncs).
    pub fn record(&self, host: &str, out: &Output) {
        let line = serde_json::json!({
            "host": host,
            "exit_code": out.exit_code,
            "ok": out.ok(),
            "error": out.error.is_some(),
        });
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{line}").and_then(|()| f.sync_data());
        }
    }
}

/// What the journal at `path` says, in a sentence: `None` when there is none.
pub fn summary(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let first: serde_json::Value = serde_json::from_str(lines.next()?).ok()?;
    let all: Vec<String> = first
        .get("hosts")?
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut finished: Vec<(String, String)> = Vec::new();
    // A torn last line (the crash during its write) is not a finished host.
    for l in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let Some(host) = v.get("host").and_then(|h| h.as_str()) else {
            continue;
        };
        let how = match v.get("exit_code").and_then(serde_json::Value::as_i64) {
            Some(c) if v.get("error").and_then(serde_json::Value::as_bool) != Some(true) => {
                format!("exit {c}")
            }
            _ => "failed before an exit status".to_owned(),
        };
        finished.push((host.to_owned(), how));
    }
    let not: Vec<&str> = all
        .iter()
        .filter(|a| !finished.iter().any(|(f, _)| f == *a))
        .map(String::as_str)
        .collect();
    let done = if finished.is_empty() {
        "none".to_owned()
    } else {
        finished
            .iter()
            .map(|(h, how)| format!("{h} ({how})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pending = if not.is_empty() {
        "none".to_owned()
    } else {
        not.join(", ")
    };
    Some(format!("hosts finished: {done}; not finished: {pending}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_and_not_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = path_for(&dir.path().join("step.log"));
        let j = Journal::create_for(&p, &["a", "b", "c"]).unwrap_or_else(|e| panic!("{e}"));
        j.record(
            "b",
            &Output {
                exit_code: Some(3),
                ..Output::default()
            },
        );
        drop(j);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = f.write_all(b"{\"host\":\"c\",\"exit");
        assert_eq!(
            summary(&p).as_deref(),
            Some("hosts finished: b (exit 3); not finished: a, c")
        );
    }
}
