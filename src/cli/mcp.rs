//! `claw mcp`: the MCP server over stdio (for Claude Code and other MCP clients).

use super::{CliError, CliResult, Ctx};

/// Serves until the client closes its end, or SIGTERM/SIGINT: either way the command returns,
/// and its browsers are closed gracefully on the way out (their profiles written) like any
/// command's. Only a SIGKILL leaves Chromium to the kernel (the launcher's parent-death signal).
pub(crate) fn run(ctx: &Ctx) -> CliResult {
    use tokio::signal::unix::{SignalKind, signal};
    let server = crate::mcp::Server::new(ctx.dirs.clone(), ctx.settings()?)
        .with_daemon_check(|home| crate::serve::lease::holder(home).is_some());
    let rt = super::runtime()?;
    let served = rt.block_on(async {
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        tokio::select! {
            r = server.serve_stdio() => r,
            _ = term.recv() => Ok(()),
            _ = int.recv() => Ok(()),
        }
    });
    // The transport's read of stdin sits on a blocking thread until the client writes or closes
    // its end; after a signal it may never return, and a plain drop of the runtime would wait
    // for it.
    rt.shutdown_background();
    served.map_err(CliError::internal)
}
