//! `claw mcp`: the MCP server over stdio (for Claude Code and other MCP clients).

use super::{CliError, CliResult, Ctx};

pub(crate) fn run(ctx: &Ctx) -> CliResult {
    let server = crate::mcp::Server::new(ctx.dirs.clone(), ctx.settings()?)
        .with_daemon_check(|home| crate::serve::lease::holder(home).is_some());
    super::runtime()?
        .block_on(server.serve_stdio())
        .map_err(CliError::internal)
}
