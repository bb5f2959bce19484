//! `claw bench engine`: the full engine (store included) against direct process spawns.

use std::time::{Duration, Instant};

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx};
use crate::config::Dirs;
use crate::engine::{Engine, NewRun, Silent};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// A workflow of N sequential `true` steps through the engine, against N direct
    /// `/bin/sh -c true` spawns measured in the same process run.
    Engine {
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// How many times to measure each side (the median is reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: BenchCommand) -> CliResult {
    match cmd {
        BenchCommand::Engine {
            steps,
            rounds,
            json,
        } => engine(ctx, steps.max(1), rounds.max(1), json),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn engine(ctx: &Ctx, steps: usize, rounds: usize, json: bool) -> CliResult {
    // A scratch data directory: the benchmark must not fill the user's run history.
    let scratch = tempfile_dir(&ctx.dirs)?;
    let dirs = Dirs {
        home: scratch.clone(),
        root: scratch.clone(),
    };
    let mut yaml = String::from("name: bench\nsteps:\n");
    for i in 0..steps {
        yaml.push_str(&format!("  - name: s{i}\n    command: \"true\"\n"));
    }
    let wf = crate::config::workflow_file::load_str(&scratch.join("bench.yaml"), yaml)
        .map_err(|e| CliError::internal(e.render()))?;
    let settings = crate::config::Settings::default();
    let engine = Engine::open(dirs, settings)?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();

    let mut direct = Vec::new();
    let mut through = Vec::new();
    for round in 0..=rounds {
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..steps {
                let status = tokio::process::Command::new("/bin/sh")
                    .args(["-c", "true"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .output()
                    .await;
                if status.is_err() {
                    return Err(CliError::internal("cannot spawn /bin/sh"));
                }
            }
            Ok(())
        })?;
        let d = t.elapsed();
        if std::env::var_os("CLAW_BENCH_DEBUG").is_some() {
            let t2 = Instant::now();
            rt.block_on(async {
                for i in 0..steps {
                    let input = crate::steps::StepInput {
                        kind: wf.steps[0].kind.clone(),
                        command: "true".into(),
                        env: vec![("A".into(), "b".into())],
                        cwd: None,
                        stdin: None,
                        timeout: Duration::from_secs(300),
                        kill_grace: Duration::from_secs(5),
                        log_path: scratch.join(format!("{i}.log")),
                        max_log_bytes: 1 << 20,
                        outputs_path: scratch.join(format!("{i}.out")),
                    };
                    crate::steps::run(&input, &cancel).await;
                }
            });
            eprintln!("step runner alone: {:?}", t2.elapsed());
        }
        let t = Instant::now();
        let run = engine.create_run(&NewRun {
            workflow: &wf,
            params: serde_json::json!({}),
            trigger: serde_json::json!({"type": "bench"}),
            dry_run: false,
            claim: true,
        })?;
        let done = rt.block_on(engine.drive_loaded(&run.id, Some(&wf), &cancel, &Silent))?;
        let e = t.elapsed();
        if done.status != crate::store::RunStatus::Succeeded {
            return Err(CliError::internal(format!(
                "benchmark run {} {}",
                done.id, done.status
            )));
        }
        // Round 0 warms caches up and is not counted.
        if round > 0 {
            direct.push(d);
            through.push(e);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let d = median(direct);
    let e = median(through);
    let ratio = e.as_secs_f64() / d.as_secs_f64().max(1e-9);
    if json {
        super::output::print_json(&serde_json::json!({
            "benchmark": "engine",
            "steps": steps,
            "rounds": rounds,
            "baseline_ms": d.as_secs_f64() * 1000.0,
            "engine_ms": e.as_secs_f64() * 1000.0,
            "ratio": ratio,
            "per_step_overhead_ms": (e.as_secs_f64() - d.as_secs_f64()) * 1000.0 / steps as f64,
        }));
    } else {
        println!("engine: {steps} sequential `true` steps, median of {rounds} rounds");
        println!(
            "  direct spawns (baseline)  {:>9.2} ms",
            d.as_secs_f64() * 1000.0
        );
        println!(
            "  claw engine (with store)  {:>9.2} ms",
            e.as_secs_f64() * 1000.0
        );
        println!("  ratio                     {ratio:>9.2}x");
    }
    Ok(())
}

fn tempfile_dir(dirs: &Dirs) -> Result<std::path::PathBuf, CliError> {
    let base = std::env::temp_dir();
    let _ = dirs;
    let dir = base.join(format!(
        "claw-bench-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}
