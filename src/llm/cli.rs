//! The seed's `claude` provider: `claude -p PROMPT --output-format text [--model M]
//! [--system-prompt S]`, run by the process supervisor (its own process group, stopped with
//! SIGTERM then SIGKILL at the timeout or on cancel, output masked). A non-zero exit is a
//! failure with the end of stderr. A conversation is sent as one prompt, earlier turns quoted.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{LlmError, Message, ProviderConfig, Reply, Request, Sink};

/// The prompt text of a conversation.
fn prompt_text(req: &Request) -> String {
    let mut turns: Vec<String> = Vec::new();
    for m in &req.messages {
        match m {
            Message::User(t) => turns.push(t.clone()),
            Message::Assistant { text, .. } => turns.push(format!("(your earlier reply)\n{text}")),
            Message::ToolResults(r) => turns.extend(
                r.iter()
                    .map(|r| format!("(tool result {})\n{}", r.id, r.content)),
            ),
        }
    }
    turns.join("\n\n")
}

/// Whether `prog` (a path, or a name looked up in `PATH`) is an executable file.
fn on_path(prog: &str) -> bool {
    if prog.contains('/') {
        return std::path::Path::new(prog).is_file();
    }
    crate::config::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| !d.is_empty() && std::path::Path::new(d).join(prog).is_file())
}

/// One exchange through the program.
pub async fn complete(
    p: &ProviderConfig,
    req: &Request,
    sink: &mut dyn Sink,
    timeout: Duration,
    kill_grace: Duration,
    cancel: &CancellationToken,
) -> Result<Reply, LlmError> {
    if !on_path(&p.command) {
        return Err(LlmError::Unavailable(format!(
            "{}: `{}` is not on PATH",
            p.name, p.command
        )));
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the claude-cli provider runs its program on purpose; the supervisor runs it"
    )]
    let mut cmd = crate::proc::Command::new(&p.command);
    cmd.arg("-p")
        .arg(prompt_text(req))
        .arg("--output-format")
        .arg("text");
    let model = req.model.as_deref().unwrap_or(&p.model);
    if !model.is_empty() {
        cmd.arg("--model").arg(model);
    }
    if let Some(s) = &req.system {
        cmd.arg("--system-prompt").arg(s);
    }
    let mut spec =
        crate::proc::Spec::new(format!("{} ({})", p.name, p.command), timeout, kill_grace);
    spec.redactor = (*crate::redact::global()).clone();
    let done = crate::proc::run(cmd, &spec, cancel).await;
    match &done.end {
        crate::proc::End::Exited(s) if s.success() => {
            sink.text(&done.stdout);
            Ok(Reply {
                text: done.stdout.trim_end().to_owned(),
                model: model.to_owned(),
                provider: p.name.clone(),
                stop_reason: "end_turn".to_owned(),
                ..Reply::default()
            })
        }
        crate::proc::End::TimedOut => Err(LlmError::Timeout(timeout)),
        crate::proc::End::Cancelled => Err(LlmError::Cancelled),
        _ => {
            let why = done.failure(timeout).unwrap_or_default();
            let tail = done.stderr_tail.trim();
            Err(LlmError::Process(if tail.is_empty() {
                format!("{}: {why}", p.command)
            } else {
                format!("{}: {why}: {tail}", p.command)
            }))
        }
    }
}
