//! `claw policy list | check COMMAND | check-file PATH | test-output TEXT`: the command
//! policies (policies.yaml over the built-in rules), as the seed's `claw policy`.

use std::path::PathBuf;

use clap::Subcommand;

use super::output;
use super::{CliError, CliResult, Ctx};
use crate::policy::{self, Policies, Verdict};

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Every rule in force: the built-in ones and those of policies.yaml (which override a
    /// built-in rule of the same name).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What the rules decide on a command (as it would run). Exit status 0 allow, 1 deny or
    /// require_approval.
    Check {
        /// The command, as one argument (quote it).
        command: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What the rules decide on a file path (file globs). Exit status 0 allow, 1 otherwise.
    CheckFile {
        /// The path (`~` is the home directory).
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Look for secret-shaped text (the secret patterns) in TEXT, or in stdin with `-`. Exit
    /// status 1 if any is found. The matches are never printed, only where they are.
    TestOutput {
        /// The text to scan, or `-` to read stdin.
        text: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: PolicyCommand) -> CliResult {
    let policies =
        policy::load(&ctx.dirs.root, &ctx.dirs.home).map_err(|e| CliError::usage(e.render()))?;
    match cmd {
        PolicyCommand::List { json } => list(&policies, json),
        PolicyCommand::Check { command, json } => {
            verdict(&policies.check_command(&command), &command, json)
        }
        PolicyCommand::CheckFile { path, json } => verdict(
            &policies.check_file(&path),
            &path.display().to_string(),
            json,
        ),
        PolicyCommand::TestOutput { text, json } => test_output(&policies, &text, json),
    }
}

fn list(p: &Policies, json: bool) -> CliResult {
    if json {
        let rules: Vec<serde_json::Value> = p
            .rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "scope": r.scope.as_str(),
                    "action": r.action.as_str(),
                    "pattern": r.pattern,
                    "reason": r.reason,
                    "enabled": r.enabled,
                    "builtin": r.builtin,
                    "origin": r.origin,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rules));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = p
        .rules
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.scope.as_str().to_owned(),
                if r.enabled {
                    r.action.as_str().to_owned()
                } else {
                    "off".to_owned()
                },
                r.origin.clone(),
                r.pattern.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["RULE", "SCOPE", "ACTION", "FROM", "PATTERN"], &rows)
    );
    match &p.file {
        Some(f) => println!("rules from {} over the built-in ones", f.display()),
        None => println!("built-in rules only (no policies.yaml)"),
    }
    Ok(())
}

fn verdict(v: &Verdict, what: &str, json: bool) -> CliResult {
    let reason = match v {
        Verdict::Deny { reason, .. } | Verdict::RequireApproval { reason, .. } => reason.clone(),
        Verdict::Allow { .. } => String::new(),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"decision": v.as_str(), "rule": v.rule(), "reason": reason})
        );
    } else {
        match v {
            Verdict::Allow { by: None } => println!("allow: no rule matches `{what}`"),
            Verdict::Allow { by: Some(r) } => println!("allow: rule `{r}` allows `{what}`"),
            Verdict::Deny { rule, .. } => println!("deny: rule `{rule}` ({reason})"),
            Verdict::RequireApproval { rule, .. } => {
                println!("require_approval: rule `{rule}` ({reason})");
            }
        }
    }
    match v {
        Verdict::Allow { .. } => Ok(()),
        _ => Err(CliError::failed()),
    }
}

fn test_output(p: &Policies, text: &str, json: bool) -> CliResult {
    let text = if text == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::internal(format!("cannot read stdin: {e}")))?;
        s
    } else {
        text.to_owned()
    };
    let found = p.scan_output(&text);
    if json {
        let list: Vec<serde_json::Value> = found
            .iter()
            .map(|f| {
                let line = text[..f.start].matches('\n').count() + 1;
                serde_json::json!({"rule": f.rule, "action": f.action.as_str(), "line": line, "start": f.start, "end": f.end})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else if found.is_empty() {
        println!("clean: no secret pattern matches");
    } else {
        for f in &found {
            let line = text[..f.start].matches('\n').count() + 1;
            println!(
                "line {line}: rule `{}` ({}, {} characters)",
                f.rule,
                f.action.as_str(),
                f.end - f.start
            );
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed())
    }
}
