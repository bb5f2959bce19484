//! The SSH tools that act: `ssh_run` (a command on a host, a group or `all`, as `claw ssh run`
//! runs it, audited as `ssh.run` by the client) and `ssh_health_check` (as `claw ssh health`).

use serde_json::{Map, Value, json};

use super::{Answer, Server, arg_int, arg_str};

impl Server {
    /// `ssh_run(target, command, timeout)`: the command on a host, a group or `all`, as
    /// `claw ssh run` runs it (the same known-hosts checks and pooled connections), each host's
    /// output in the text.
    pub(super) async fn ssh_run(&self, a: &Map<String, Value>, actor: &str) -> Answer {
        let target = arg_str(a, "target");
        let command = arg_str(a, "command");
        let fail = |e: String| format!("Error running on '{target}': {e}");
        if command.trim().is_empty() {
            return Err(fail("the command is empty".into()));
        }
        let timeout = u64::try_from(arg_int(a, "timeout").max(1)).unwrap_or(1);
        let reg = self.hosts()?;
        let hosts: Vec<crate::ssh::Host> = reg
            .resolve(target)
            .map(|hs| hs.into_iter().cloned().collect())
            .map_err(|e| fail(e.0))?;
        let pool = crate::ssh::Pool::new(crate::ssh::Settings::from_env(&self.dirs.home, actor));
        let cmd = crate::ssh::Command {
            command: command.to_owned(),
            env: Vec::new(),
            timeout: std::time::Duration::from_secs(timeout),
            sudo: false,
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let results = crate::ssh::fan_out(
            &pool,
            &hosts,
            &cmd,
            crate::ssh::FanOut {
                parallel: 8,
                fail_fast: false,
            },
            &cancel,
            std::sync::Arc::new(|_: &str, _: bool, _: &[u8]| {}),
        )
        .await;
        pool.close_all().await;
        let event = crate::audit::Event::new(
            actor,
            crate::audit::Action::SshRun,
            target,
            if results.iter().all(|(_, o)| o.ok()) {
                "ok"
            } else {
                "failed"
            },
            json!({"command": command, "hosts": results.iter().map(|(h, _)| h.alias.clone()).collect::<Vec<_>>()}),
        );
        if let Err(e) = crate::audit::AuditLog::in_dir(&self.dirs.home).record(&event) {
            tracing::warn!("mcp: ssh_run not audited: {e}");
        }
        let mut lines = Vec::new();
        let mut items = Vec::new();
        let mut failed = 0;
        for (h, o) in &results {
            let status = match (&o.error, o.exit_code) {
                (Some(e), _) => format!("FAILED: {e}"),
                (None, Some(0)) => "ok".to_owned(),
                (None, Some(c)) => format!("exit {c}"),
                (None, None) => "no exit status".to_owned(),
            };
            if !o.ok() {
                failed += 1;
            }
            let stdout = String::from_utf8_lossy(&o.stdout);
            let stderr = String::from_utf8_lossy(&o.stderr);
            lines.push(format!(
                "── {} ({:.2}s): {status}",
                h.alias,
                o.duration.as_secs_f64()
            ));
            if !stdout.trim().is_empty() {
                lines.push(stdout.trim_end().to_owned());
            }
            if !stderr.trim().is_empty() {
                lines.push(stderr.trim_end().to_owned());
            }
            items.push(json!({
                "host": h.alias,
                "stdout": stdout,
                "stderr": stderr,
                "exit_code": o.exit_code,
                "ok": o.ok(),
                "error": o.error,
                "duration_ms": u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
            }));
        }
        if results.len() > 1 {
            lines.push(format!(
                "{} of {} hosts ok",
                results.len() - failed,
                results.len()
            ));
        }
        let text = lines.join("\n");
        if failed > 0 {
            return Err(text);
        }
        Ok((text, json!({"results": items})))
    }

    /// `ssh_health_check()`: ping and SSH to every host, written to the seed's health file.
    pub(super) async fn ssh_health_check(&self, actor: &str) -> Answer {
        let reg = self.hosts()?;
        let pool = crate::ssh::Pool::new(crate::ssh::Settings::from_env(&self.dirs.home, actor));
        let report = crate::ssh::health::check(&pool, &reg.hosts).await;
        pool.close_all().await;
        crate::ssh::health::write(&self.dirs.home, &report)
            .map_err(|e| format!("Error writing the health report: {e}"))?;
        let mut lines = Vec::new();
        for h in report["hosts"].as_array().into_iter().flatten() {
            let ok = h["ping_ok"] == true && h["ssh_ok"] == true;
            lines.push(format!(
                "{:<16} {:<4} ping {:<5} ssh {:<5} {}",
                h["alias"].as_str().unwrap_or_default(),
                if ok { "ok" } else { "DOWN" },
                h["ping_ok"],
                h["ssh_ok"],
                h["error"]
                    .as_str()
                    .or(h["load_avg"].as_str())
                    .unwrap_or_default(),
            ));
        }
        if lines.is_empty() {
            lines.push("No hosts.".into());
        }
        Ok((lines.join("\n"), report))
    }
}
