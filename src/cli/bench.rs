//! `claw bench engine`: the full engine (store included) against direct process spawns.

use std::time::{Duration, Instant};

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx};
use crate::config::Dirs;
use crate::engine::{Engine, NewRun, Silent};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// An `llm` step through the engine (store, log, provider chain) against a raw streamed
    /// HTTP request to the same loopback server speaking OpenAI's Chat Completions SSE; and the
    /// time from the server's first streamed token to the token's arrival in the step log.
    Llm {
        /// How many times to measure each side (the median is reported).
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        /// How many text pieces each streamed reply has.
        #[arg(long, default_value_t = 50)]
        pieces: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// `claw audit verify` on a log of N entries, against reading and parsing the same lines
    /// without checking them.
    Audit {
        /// How many audit entries.
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Full-text search of memory.db with N memories (p50/p99 of many queries), against the
    /// seed's `LIKE %q%` scan of the same rows for the same words.
    Memory {
        /// How many memories.
        #[arg(long, default_value_t = 100_000)]
        memories: usize,
        /// How many search queries to time (the LIKE baseline times a quarter as many).
        #[arg(long, default_value_t = 400)]
        queries: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A workflow of N sequential `true` steps through the engine, against N direct
    /// `/bin/sh -c true` spawns measured in the same process run.
    Engine {
        /// How many steps in the workflow.
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// How many times to measure each side (the median is reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daemon's scheduler: N schedules with fires spread over a period, run for some
    /// periods; the lateness of each fire (p50/p99) against a bare timer loop waking at the same
    /// instants; then `claw serve` at rest on N schedules and on none (resident memory, CPU).
    Cron {
        /// How many schedules.
        #[arg(long, default_value_t = 10_000)]
        schedules: usize,
        /// Each schedule is `every <period>` (whole seconds).
        #[arg(long, default_value = "10s")]
        period: String,
        /// How many periods to measure.
        #[arg(long, default_value_t = 2)]
        periods: u32,
        /// Skip the idle daemon measurement.
        #[arg(long)]
        no_idle: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// N sequential `true` commands on one host of hosts.yaml through the connection pool,
    /// against N `ssh` CLI invocations (no ControlMaster) measured in the same run. The host
    /// must use key authentication with a `key_file` and have its key pinned. A target of
    /// several hosts also times `uptime` on all at once against one, and the RSS of the open
    /// connections, and with --ansible, `claw ssh run --parallel N TARGET uptime` against
    /// `ansible TARGET -i INVENTORY -m command -a uptime -f N`, each a process of its own.
    Ssh {
        /// An alias (or a target: its first host is used).
        target: String,
        /// How many commands each way.
        #[arg(long, default_value_t = 100)]
        commands: usize,
        /// An Ansible inventory naming the same hosts and key (the `ansible` on PATH runs it).
        #[arg(long, value_name = "INVENTORY")]
        ansible: Option<std::path::PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The PostgreSQL store (scale-out), in three parts, each in scratch databases on
    /// `CLAW_TEST_PG` (default postgres://postgres@127.0.0.1:5432/test):
    /// a worker's claim of one run (`FOR UPDATE SKIP LOCKED`, fencing epoch bumped; store calls
    /// in this process) with N runs queued, p50/p99, against one primary-key read of a run (the
    /// round trip); the throughput of real `claw worker` processes on --runs runs of a one-step
    /// `sleep 0.05` workflow, for each count of --workers, against one worker; and
    /// `claw workflow run` (the whole process) of --steps sequential `true` steps on
    /// PostgreSQL against SQLite.
    Pg {
        /// How many runs are queued for the claims.
        #[arg(long, default_value_t = 10_000)]
        queued: usize,
        /// How many claims to time.
        #[arg(long, default_value_t = 500)]
        claims: usize,
        /// Runs for the throughput part (0: skip it).
        #[arg(long, default_value_t = 1_000)]
        runs: usize,
        /// Worker processes, one measurement per count (the first is the baseline).
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
        workers: Vec<usize>,
        /// `--slots` of each worker.
        #[arg(long, default_value_t = 4)]
        slots: usize,
        /// Steps of the sequential workflow (0: skip that part).
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// Rounds of the sequential workflow on each store (the median is reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Chat commands through a real `claw serve`: `!run` from a Telegram chat (a Bot API served
    /// by this process) → run created and executed → replies delivered, p50/p99, beside the
    /// API's own round trip; then a profile of 10 targets that each answer after 200 ms against
    /// one such target.
    Msg {
        /// How many `!run` commands, one after the other.
        #[arg(long, default_value_t = 30)]
        commands: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Chromium: a cold start to the first page, then `goto`+`extract` on a local page as a
    /// browser step does it against the same calls made directly with chromiumoxide on the
    /// same browser (medians of interleaved rounds), and claw's own peak RSS.
    Browser {
        /// How many rounds each way.
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Webhooks through a real `claw serve`: authenticated `POST /hooks/<name>` (each creates a
    /// run the daemon executes meanwhile) against `GET /healthz` on the same daemon.
    Web {
        /// How many requests.
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// How many requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The dashboard: with --runs runs in the store, `GET /api/v1/runs` and the runs page of a
    /// real `claw serve` (API token) against `GET /healthz` on the same daemon.
    Dashboard {
        /// Runs put in the store first.
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        /// Requests per endpoint.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// How many requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn cron(schedules: usize, period: &str, periods: u32, idle: bool, json: bool) -> CliResult {
    let period = crate::time::duration::parse(period)
        .map_err(|e| CliError::usage(format!("invalid --period `{period}`: {e}")))?;
    let r =
        crate::serve::bench::cron(schedules, period, periods, idle).map_err(CliError::internal)?;
    if json {
        super::output::print_json(&serde_json::to_value(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "cron: {} schedules, fires spread over {} s, {} periods ({} fires in {} passes)",
        r.schedules, r.period_s, r.periods, r.claw.count, r.passes
    );
    println!(
        "  fire lateness            p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        r.claw.p50_ms, r.claw.p99_ms, r.claw.max_ms
    );
    println!(
        "  bare timer (baseline)    p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        r.baseline.p50_ms, r.baseline.p99_ms, r.baseline.max_ms
    );
    println!("  p99 ratio                {:>8.2}x", r.p99_ratio);
    if let Some(i) = r.idle {
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "  idle daemon, {:>6} schedules  RSS {:>6.1} MiB (private {:>5.1} MiB)   CPU {:>5.2}% over {:.0} s",
            r.schedules,
            mib(i.rss_kib),
            mib(i.private_kib),
            i.cpu_percent,
            i.window_s
        );
        println!(
            "  idle daemon, no schedule       RSS {:>6.1} MiB (private {:>5.1} MiB)   CPU {:>5.2}%",
            mib(i.baseline_rss_kib),
            mib(i.baseline_private_kib),
            i.baseline_cpu_percent
        );
        println!("  RSS ratio                {:>8.2}x", i.rss_ratio);
    }
    Ok(())
}

fn web(requests: usize, concurrency: usize, json: bool) -> CliResult {
    let r = crate::serve::bench::web(requests, concurrency).map_err(CliError::internal)?;
    if json {
        super::output::print_json(&serde_json::to_value(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "web: {} requests, {} concurrent clients",
        r.requests, r.concurrency
    );
    println!(
        "  GET /healthz (baseline)      {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        r.baseline_rps, r.baseline_latency.p50_ms, r.baseline_latency.p99_ms
    );
    println!(
        "  POST /hooks/<name> (bearer)  {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} accepted)",
        r.hook_rps, r.hook_latency.p50_ms, r.hook_latency.p99_ms, r.accepted
    );
    println!("  throughput ratio             {:>9.2}x", r.rps_ratio);
    println!(
        "  runs: {} finished while deliveries came in; all {} accepted ran {:.1} s after the last ({} succeeded)",
        r.runs_done_during, r.accepted, r.drain_s, r.runs_succeeded
    );
    println!(
        "  (a real `claw serve` child: its listener, queue and run slots, runs executing; the client is this process)"
    );
    Ok(())
}

/// What `claw bench pg` measures.
struct PgBench {
    queued: usize,
    claims: usize,
    runs: usize,
    workers: Vec<usize>,
    slots: usize,
    steps: usize,
    rounds: usize,
}

fn pg(b: &PgBench, json: bool) -> CliResult {
    use crate::worker::bench;
    let r = bench::run(b.queued, b.claims).map_err(CliError::internal)?;
    if !json {
        println!(
            "pg: claims of one run with {} queued ({} timed; store calls in this process)",
            r.queued, r.claims
        );
        println!(
            "  claim (SKIP LOCKED + epoch)    p50 {:>8.2} ms   p99 {:>8.2} ms",
            r.claim_p50_ms, r.claim_p99_ms
        );
        println!(
            "  read of one run (baseline)     p50 {:>8.2} ms   p99 {:>8.2} ms",
            r.baseline_p50_ms, r.baseline_p99_ms
        );
        println!("  p50 ratio                      {:>8.2}x", r.p50_ratio);
    }
    let mut throughput: Vec<bench::Throughput> = Vec::new();
    if b.runs > 0 && !b.workers.is_empty() {
        if !json {
            println!(
                "pg: {} runs of a one-step `sleep 0.05` workflow by `claw worker --slots {}` processes",
                b.runs, b.slots
            );
        }
        for &w in &b.workers {
            let w = w.max(1);
            let secs = bench::throughput(b.runs, w, b.slots.max(1)).map_err(CliError::internal)?;
            let rps = b.runs as f64 / secs.max(1e-9);
            let base = throughput.first().map_or(rps, |t| t.runs_per_s);
            let t = bench::Throughput {
                workers: w,
                slots: b.slots.max(1),
                runs: b.runs,
                seconds: secs,
                runs_per_s: rps,
                ratio_vs_one: rps / base.max(1e-9),
            };
            if !json {
                println!(
                    "  {} worker(s) x {} slots   {:>8.1} runs/s   {:>7.2} s   {:>5.2}x the first",
                    t.workers, t.slots, t.runs_per_s, t.seconds, t.ratio_vs_one
                );
            }
            throughput.push(t);
        }
    }
    let sequential = if b.steps > 0 {
        let s = bench::sequential(b.steps, b.rounds.max(1)).map_err(CliError::internal)?;
        if !json {
            println!(
                "pg: `claw workflow run` of {} sequential `true` steps, median of {} rounds",
                s.steps, s.rounds
            );
            println!("  on SQLite (baseline)     {:>9.1} ms", s.sqlite_ms);
            println!("  on PostgreSQL            {:>9.1} ms", s.postgres_ms);
            println!("  ratio                    {:>9.2}x", s.ratio);
        }
        Some(s)
    } else {
        None
    };
    if json {
        super::output::print_json(&serde_json::json!({
            "claims": r,
            "throughput": throughput,
            "sequential": sequential,
        }));
    }
    Ok(())
}

fn msg(commands: usize, json: bool) -> CliResult {
    let r = crate::serve::msg_bench::run(commands).map_err(CliError::internal)?;
    if json {
        super::output::print_json(&serde_json::to_value(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "msg: {} `!run` commands through `claw serve` (Telegram long polling)",
        r.commands
    );
    println!(
        "  !run → `queued` reply         p50 {:>8.2} ms   p99 {:>8.2} ms",
        r.queued.p50_ms, r.queued.p99_ms
    );
    println!(
        "  !run → run done → reply       p50 {:>8.2} ms   p99 {:>8.2} ms",
        r.done.p50_ms, r.done.p99_ms
    );
    println!(
        "  Bot API round trip (baseline) p50 {:>8.2} ms   p99 {:>8.2} ms",
        r.baseline.p50_ms, r.baseline.p99_ms
    );
    println!("  p50 ratio                     {:>8.2}x", r.p50_ratio);
    println!(
        "  profile of 10 targets at 200 ms each {:>7.0} ms; one target {:>7.0} ms; ratio {:.2}x",
        r.fanout_ms, r.single_ms, r.fanout_ratio
    );
    Ok(())
}

fn dashboard(runs: usize, requests: usize, concurrency: usize, json: bool) -> CliResult {
    let r = crate::serve::dashboard_bench::run(runs, requests, concurrency)
        .map_err(CliError::internal)?;
    if json {
        super::output::print_json(&serde_json::to_value(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "dashboard: {} runs in the store, {} requests per endpoint, {} concurrent clients",
        r.runs, r.requests, r.concurrency
    );
    for (name, s) in [
        ("GET /healthz (baseline)", &r.baseline),
        ("GET /api/v1/runs       ", &r.api_runs),
        ("GET /runs (page)       ", &r.runs_page),
    ] {
        println!(
            "  {name}   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    println!(
        "  p99 ratio to /healthz: API {:.2}x, page {:.2}x; {} non-200 answers",
        r.api_p99_ratio, r.page_p99_ratio, r.errors
    );
    println!(
        "  log line written by a running step -> received ({} lines{}):",
        r.sse.lines,
        if r.sse.missed > 0 {
            format!(", {} never received over SSE", r.sse.missed)
        } else {
            String::new()
        }
    );
    for (name, s) in [
        ("tail of the file (baseline)", &r.sse.baseline_tail),
        ("SSE client                 ", &r.sse.sse),
    ] {
        println!(
            "    {name} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    let i = &r.idle;
    println!(
        "  idle daemon RSS (anonymous): --no-dashboard {} KiB ({}); dashboard unused {} KiB ({}), {:+} KiB; dashboard after serving every page {} KiB ({}), {:+} KiB",
        i.no_dashboard_rss_kib,
        i.no_dashboard_anon_kib,
        i.unused_rss_kib,
        i.unused_anon_kib,
        i.unused_delta_kib,
        i.dashboard_rss_kib,
        i.dashboard_anon_kib,
        i.delta_kib,
    );
    Ok(())
}

pub(crate) fn run(ctx: &Ctx, cmd: BenchCommand) -> CliResult {
    match cmd {
        BenchCommand::Dashboard {
            runs,
            requests,
            concurrency,
            json,
        } => dashboard(runs.max(1), requests.max(1), concurrency.max(1), json),
        BenchCommand::Msg { commands, json } => msg(commands.max(1), json),
        BenchCommand::Pg {
            queued,
            claims,
            runs,
            workers,
            slots,
            steps,
            rounds,
            json,
        } => pg(
            &PgBench {
                queued: queued.max(1),
                claims: claims.max(1).min(queued.max(1)),
                runs,
                workers,
                slots,
                steps,
                rounds,
            },
            json,
        ),
        BenchCommand::Cron {
            schedules,
            period,
            periods,
            no_idle,
            json,
        } => cron(schedules.max(1), &period, periods.max(1), !no_idle, json),
        BenchCommand::Web {
            requests,
            concurrency,
            json,
        } => web(requests.max(1), concurrency.max(1), json),
        BenchCommand::Audit { entries, json } => audit(entries.max(1), json),
        BenchCommand::Memory {
            memories,
            queries,
            json,
        } => memory(memories.max(1), queries.max(4), json),
        BenchCommand::Browser { rounds, json } => browser_bench(rounds.max(1), json),
        BenchCommand::Ssh {
            target,
            commands,
            ansible,
            json,
        } => ssh_bench(ctx, &target, commands.max(1), ansible.as_deref(), json),
        BenchCommand::Engine {
            steps,
            rounds,
            json,
        } => engine(steps.max(1), rounds.max(1), json),
        BenchCommand::Llm {
            rounds,
            pieces,
            json,
        } => llm_bench(rounds.max(1), pieces.max(1), json),
    }
}

/// The loopback server of `claw bench llm`: each request gets a streamed reply; the instant the
/// first text piece was written is kept, then the rest follows after `pause`.
async fn llm_server(
    listener: tokio::net::TcpListener,
    pieces: usize,
    pause: Duration,
    first: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "b", "object": "chat.completion.chunk", "model": "bench",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let first = first.clone();
        let head_chunk = chunk(
            serde_json::json!({"role": "assistant", "content": "FIRSTTOKEN\n"}),
            serde_json::Value::Null,
        );
        let mut rest = String::new();
        for i in 0..pieces {
            rest.push_str(&chunk(
                serde_json::json!({"content": format!("piece {i} ")}),
                serde_json::Value::Null,
            ));
        }
        rest.push_str(&chunk(serde_json::json!({}), serde_json::json!("stop")));
        rest.push_str("data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 50}}\n\n");
        rest.push_str("data: [DONE]\n\n");
        tokio::task::spawn_local(async move {
            let mut buf = Vec::new();
            let mut b = [0u8; 8192];
            loop {
                let Ok(n) = conn.read(&mut b).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&b[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break;
                    }
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                .await;
            let _ = conn.write_all(head_chunk.as_bytes()).await;
            let _ = conn.flush().await;
            if let Ok(mut f) = first.lock() {
                *f = Some(Instant::now());
            }
            tokio::time::sleep(pause).await;
            let _ = conn.write_all(rest.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

fn llm_bench(rounds: usize, pieces: usize, json: bool) -> CliResult {
    let scratch = scratch_dir()?;
    let dirs = Dirs {
        home: scratch.clone(),
        root: scratch.clone(),
    };
    let rt = super::runtime()?;
    let local = tokio::task::LocalSet::new();
    let listener = local
        .block_on(&rt, tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| CliError::internal(format!("cannot listen: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::internal(e.to_string()))?;
    let first = std::sync::Arc::new(std::sync::Mutex::new(None));
    // The pause after the first token: the reply is still streaming when the token is looked for.
    let pause = Duration::from_millis(20);
    local.spawn_local(llm_server(listener, pieces, pause, first.clone()));
    std::fs::write(
        scratch.join("claw.yaml"),
        format!(
            "llm:\n  fallback: []\n  providers:\n    bench: {{kind: openai, base_url: \"http://{addr}/v1\", model: bench}}\n"
        ),
    )
    .map_err(|e| CliError::internal(e.to_string()))?;
    let yaml = "name: bench-llm\nsteps:\n  - name: ask\n    type: llm\n    provider: bench\n    prompt: hello\n";
    let wf = crate::workflow::load::load_str(&scratch.join("bench.yaml"), yaml.to_owned())
        .map_err(|e| CliError::internal(e.render()))?;
    let engine = Engine::open(dirs.clone(), crate::config::Settings::default())?;
    let cancel = CancellationToken::new();
    let client = crate::llm::client().map_err(|e| CliError::internal(e.to_string()))?;
    let body = serde_json::json!({"model": "bench", "messages": [{"role": "user", "content": "hello"}], "stream": true}).to_string();
    let url = format!("http://{addr}/v1/chat/completions");
    let mut raw = Vec::new();
    let mut through = Vec::new();
    let mut ttft = Vec::new();
    for round in 0..=rounds {
        let t = Instant::now();
        local.block_on(&rt, async {
            use futures_util::StreamExt as _;
            let resp = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| CliError::internal(format!("raw request: {e}")))?;
            let mut s = resp.bytes_stream();
            while let Some(b) = s.next().await {
                b.map_err(|e| CliError::internal(format!("raw request: {e}")))?;
            }
            Ok::<_, CliError>(())
        })?;
        let r = t.elapsed();
        let run = engine.create_run(&NewRun {
            workflow: &wf,
            params: serde_json::json!({}),
            trigger: serde_json::json!({"type": "bench"}),
            dry_run: false,
            claim: true,
        })?;
        let log_dir = dirs.run_log_dir(&run.id);
        if let Ok(mut f) = first.lock() {
            *f = None;
        }
        let t = Instant::now();
        let (done, seen) = local.block_on(&rt, async {
            let watch = async {
                loop {
                    let found = std::fs::read_dir(&log_dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .any(|e| {
                            std::fs::read_to_string(e.path())
                                .is_ok_and(|t| t.contains("FIRSTTOKEN"))
                        });
                    if found {
                        return Instant::now();
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            };
            let drive = engine.drive_loaded(&run.id, Some(&wf), &cancel, &Silent);
            tokio::pin!(drive);
            tokio::select! {
                seen = watch => (drive.await, Some(seen)),
                done = &mut drive => (done, None),
            }
        });
        let e = t.elapsed();
        let done = done?;
        if done.status != crate::store::RunStatus::Succeeded {
            return Err(CliError::internal(format!(
                "benchmark run {} {}",
                done.id, done.status
            )));
        }
        let wrote = first.lock().ok().and_then(|f| *f);
        if round > 0 {
            raw.push(r);
            through.push(e);
            if let (Some(w), Some(s)) = (wrote, seen) {
                ttft.push(s.saturating_duration_since(w));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let r = median(raw);
    let e = median(through);
    let ratio = e.as_secs_f64() / r.as_secs_f64().max(1e-9);
    let overhead = (e.as_secs_f64() - r.as_secs_f64()) * 1000.0;
    let first_ms = if ttft.is_empty() {
        f64::NAN
    } else {
        median(ttft).as_secs_f64() * 1000.0
    };
    if json {
        super::output::print_json(&serde_json::json!({
            "benchmark": "llm",
            "rounds": rounds,
            "pieces": pieces,
            "server_pause_ms": pause.as_secs_f64() * 1000.0,
            "raw_http_ms": r.as_secs_f64() * 1000.0,
            "llm_step_ms": e.as_secs_f64() * 1000.0,
            "ratio": ratio,
            "overhead_ms": overhead,
            "first_token_to_log_ms": first_ms,
        }));
    } else {
        println!(
            "llm: one llm step (engine, store, log) vs a raw streamed request, median of {rounds} rounds"
        );
        println!(
            "  raw HTTP (baseline)        {:>9.2} ms",
            r.as_secs_f64() * 1000.0
        );
        println!(
            "  llm step through claw      {:>9.2} ms",
            e.as_secs_f64() * 1000.0
        );
        println!("  ratio                      {ratio:>9.2}x  ({overhead:.2} ms more)");
        println!("  first token: server write → step log  {first_ms:.2} ms");
        println!(
            "  (the server pauses {} ms after the first token; both sides include it)",
            pause.as_millis()
        );
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn engine(steps: usize, rounds: usize, json: bool) -> CliResult {
    // A scratch data directory: the benchmark must not fill the user's run history.
    let scratch = scratch_dir()?;
    let dirs = Dirs {
        home: scratch.clone(),
        root: scratch.clone(),
    };
    let mut yaml = String::from("name: bench\nsteps:\n");
    for i in 0..steps {
        yaml.push_str(&format!("  - name: s{i}\n    command: \"true\"\n"));
    }
    let wf = crate::workflow::load::load_str(&scratch.join("bench.yaml"), yaml)
        .map_err(|e| CliError::internal(e.render()))?;
    let settings = crate::config::Settings::default();
    let engine = Engine::open(dirs, settings)?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    let one_run = || -> Result<crate::store::RunRecord, CliError> {
        let run = engine.create_run(&NewRun {
            workflow: &wf,
            params: serde_json::json!({}),
            trigger: serde_json::json!({"type": "bench"}),
            dry_run: false,
            claim: true,
        })?;
        Ok(rt.block_on(engine.drive_loaded(&run.id, Some(&wf), &cancel, &Silent))?)
    };

    // The first run on a new database is measured on its own; then the store is brought to the
    // state of a data directory in use (its WAL file at full size, overwritten in place, which
    // makes each commit's fsync cheaper) before the measured rounds.
    let first = {
        let t = Instant::now();
        one_run()?;
        t.elapsed()
    };
    let wal = scratch.join("claw.db-wal");
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let mut warmup = 0;
    let mut last = wal_size();
    while warmup < 60 {
        one_run()?;
        warmup += 1;
        let now = wal_size();
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let mut direct = Vec::new();
    let mut through = Vec::new();
    for round in 0..=rounds {
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..steps {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "the engine benchmark's baseline: the same spawns, made directly"
                )]
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
        let t = Instant::now();
        let done = one_run()?;
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
            "first_run_on_new_store_ms": first.as_secs_f64() * 1000.0,
            "first_run_ratio": first.as_secs_f64() / d.as_secs_f64().max(1e-9),
            "warmup_runs": warmup,
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
        println!(
            "  (first run on a new database: {:.2} ms, {:.2}x; then {warmup} warm-up runs)",
            first.as_secs_f64() * 1000.0,
            first.as_secs_f64() / d.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

fn scratch_dir() -> Result<std::path::PathBuf, CliError> {
    crate::serve::bench::scratch()
        .map_err(|e| CliError::internal(format!("cannot create a scratch directory: {e}")))
}

fn audit(entries: usize, json: bool) -> CliResult {
    use crate::audit::{AuditLog, Event, write_chain};
    let scratch = scratch_dir()?;
    let path = scratch.join("audit.log");
    let events = (0..entries).map(|i| {
        Event::new(
            "cli:bench",
            if i % 2 == 0 {
                crate::audit::Action::WorkflowStepStarted
            } else {
                crate::audit::Action::WorkflowStepFinished
            },
            &format!("01jdzbenchrun{:08}/step-{}", i / 40, i % 40),
            "ok",
            serde_json::json!({"attempt": 1, "exit_code": 0}),
        )
    });
    write_chain(&path, events).map_err(|e| CliError::internal(e.to_string()))?;
    let log = AuditLog::new(&path);
    let mut verify_times = Vec::new();
    let mut parse_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let report = log
            .verify()
            .map_err(|e| CliError::internal(e.to_string()))?;
        verify_times.push(t.elapsed());
        if report.problem.is_some() || report.entries != entries {
            return Err(CliError::internal(format!(
                "benchmark log did not verify: {report:?}"
            )));
        }
        // Baseline: what any reader pays, reading and parsing every line.
        let t = Instant::now();
        let text = std::fs::read(&path).map_err(|e| CliError::internal(e.to_string()))?;
        let mut n = 0usize;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if serde_json::from_slice::<serde_json::Value>(line).is_ok() {
                n += 1;
            }
        }
        parse_times.push(t.elapsed());
        if n != entries {
            return Err(CliError::internal("baseline parse lost lines"));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let v = median(verify_times);
    let p = median(parse_times);
    let ratio = v.as_secs_f64() / p.as_secs_f64().max(1e-9);
    if json {
        super::output::print_json(&serde_json::json!({
            "benchmark": "audit",
            "entries": entries,
            "verify_ms": v.as_secs_f64() * 1000.0,
            "baseline_parse_ms": p.as_secs_f64() * 1000.0,
            "ratio": ratio,
        }));
    } else {
        println!("audit verify: {entries} entries, median of 3");
        println!(
            "  read + parse every line (baseline)  {:>9.1} ms",
            p.as_secs_f64() * 1000.0
        );
        println!(
            "  claw audit verify                   {:>9.1} ms",
            v.as_secs_f64() * 1000.0
        );
        println!("  ratio                               {ratio:>9.2}x");
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*), so every run searches the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }
}

/// This thread's CPU time: what a query costs, apart from waiting for a busy machine's cores.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn memory(memories: usize, queries: usize, json: bool) -> CliResult {
    use crate::store::memory::{Filter, MemoryDb, NewMemory};
    let internal = |e: crate::store::StoreError| CliError::internal(e.to_string());
    let scratch = scratch_dir()?;
    let mut db = MemoryDb::open(&scratch.join("memory.db")).map_err(internal)?;
    // A vocabulary of made-up words; each memory is a key and a value of 6 to 14 of them.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let syllables = [
        "ka", "lo", "mi", "ner", "tu", "vas", "pol", "ri", "sen", "dar", "qui", "be", "zo", "fen",
        "gra", "hu", "jit", "mor", "pex", "sa", "tro", "ul", "wi", "yen",
    ];
    let vocab: Vec<String> = (0..20_000)
        .map(|_| {
            let n = 2 + rng.below(3);
            (0..n)
                .map(|_| syllables[rng.below(syllables.len())])
                .collect()
        })
        .collect();
    let categories = [
        "fact",
        "preference",
        "project_context",
        "conversation_summary",
    ];
    let rows: Vec<(String, String, &str)> = (0..memories)
        .map(|i| {
            let n = 6 + rng.below(9);
            let value: Vec<&str> = (0..n)
                .map(|_| vocab[rng.below(vocab.len())].as_str())
                .collect();
            (
                format!("{}-{i}", vocab[rng.below(vocab.len())]),
                value.join(" "),
                categories[i % categories.len()],
            )
        })
        .collect();
    let news: Vec<NewMemory<'_>> = rows
        .iter()
        .map(|(k, v, c)| NewMemory {
            category: c,
            key: k,
            value: v,
            tags: &[],
            project: "",
        })
        .collect();
    let t = Instant::now();
    db.remember_many(&news, &crate::time::iso_utc(chrono::Utc::now()))
        .map_err(internal)?;
    let load = t.elapsed();
    // Queries: one or two words, or the first four letters of one (a prefix).
    let words: Vec<String> = (0..queries)
        .map(|i| {
            let w = &vocab[rng.below(vocab.len())];
            match i % 3 {
                0 => w.clone(),
                1 => format!("{w} {}", vocab[rng.below(vocab.len())]),
                _ => w.chars().take(4).collect(),
            }
        })
        .collect();
    let mut fts = Vec::with_capacity(queries);
    let mut by_kind: [Vec<Duration>; 3] = Default::default();
    let mut fts_cpu = Vec::with_capacity(queries);
    let mut hits = 0usize;
    for (i, w) in words.iter().enumerate() {
        let q = crate::memory::fts_query(w).unwrap_or_default();
        let (t, c) = (Instant::now(), thread_cpu());
        hits += db
            .search(&q, Filter::default(), crate::memory::SEARCH_LIMIT)
            .map_err(internal)?
            .len();
        fts.push(t.elapsed());
        fts_cpu.push(thread_cpu().saturating_sub(c));
        by_kind[i % 3].push(t.elapsed());
    }
    for v in &mut by_kind {
        v.sort();
    }
    let mut like = Vec::new();
    let mut like_cpu = Vec::new();
    for w in words.iter().step_by(4) {
        let first = w.split(' ').next().unwrap_or_default();
        let (t, c) = (Instant::now(), thread_cpu());
        db.search_like(first, Filter::default(), crate::memory::SEARCH_LIMIT)
            .map_err(internal)?;
        like.push(t.elapsed());
        like_cpu.push(thread_cpu().saturating_sub(c));
    }
    fts_cpu.sort();
    like_cpu.sort();
    drop(db);
    let _ = std::fs::remove_dir_all(&scratch);
    fts.sort();
    like.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (f50, f99) = (percentile(&fts, 0.5), percentile(&fts, 0.99));
    let (l50, l99) = (percentile(&like, 0.5), percentile(&like, 0.99));
    let ratio = l99.as_secs_f64() / f99.as_secs_f64().max(1e-9);
    if json {
        super::output::print_json(&serde_json::json!({
            "benchmark": "memory",
            "memories": memories,
            "queries": fts.len(),
            "load_ms": ms(load),
            "fts_p50_ms": ms(f50),
            "fts_p99_ms": ms(f99),
            "baseline_like_p50_ms": ms(l50),
            "baseline_like_p99_ms": ms(l99),
            "fts_cpu_p99_ms": ms(percentile(&fts_cpu, 0.99)),
            "baseline_like_cpu_p99_ms": ms(percentile(&like_cpu, 0.99)),
            "average_hits": hits as f64 / fts.len() as f64,
            "fts_p99_ms_by_query": {
                "one_word": ms(percentile(&by_kind[0], 0.99)),
                "two_words": ms(percentile(&by_kind[1], 0.99)),
                "four_letter_prefix": ms(percentile(&by_kind[2], 0.99)),
            },
            "ratio_p99": ratio,
        }));
    } else {
        println!(
            "memory search: {memories} memories (loaded in {:.0} ms), {} queries",
            ms(load),
            fts.len()
        );
        println!(
            "  LIKE %q% scan (baseline, {} queries)  p50 {:>8.3} ms  p99 {:>8.3} ms",
            like.len(),
            ms(l50),
            ms(l99)
        );
        println!(
            "  FTS5 bm25, prefix words             p50 {:>8.3} ms  p99 {:>8.3} ms",
            ms(f50),
            ms(f99)
        );
        println!(
            "  CPU time p99: LIKE {:.3} ms, FTS5 {:.3} ms (wall time includes waiting for a core)",
            ms(percentile(&like_cpu, 0.99)),
            ms(percentile(&fts_cpu, 0.99))
        );
        println!("  p99 ratio (baseline / fts)          {ratio:>8.1}x");
    }
    Ok(())
}

fn ssh_bench(
    ctx: &Ctx,
    target: &str,
    n: usize,
    ansible: Option<&std::path::Path>,
    json: bool,
) -> CliResult {
    use crate::ssh::{Command as SshCommand, Pool, Registry, Settings};
    let reg =
        Registry::find(&ctx.dirs.root, &ctx.dirs.home).map_err(|e| CliError::usage(e.render()))?;
    let host = reg
        .resolve(target)
        .map_err(|e| CliError::usage(e.0))?
        .first()
        .map(|h| (*h).clone())
        .ok_or_else(|| CliError::usage("the target has no hosts"))?;
    let Some(key) = host.key_file.clone() else {
        return Err(CliError::usage(format!(
            "{} has no key_file: the ssh CLI baseline needs one",
            host.alias
        )));
    };
    let settings = Settings::from_env(&ctx.dirs.home, "bench");
    let pool = Pool::new(settings.clone());
    let cmd = SshCommand {
        command: "true".into(),
        env: Vec::new(),
        timeout: Duration::from_secs(30),
        sudo: false,
    };
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let failures = rt.block_on(async {
        let mut failed = 0;
        for _ in 0..n {
            let out = pool.run(&host, &cmd, &cancel, &mut |_, _| {}).await;
            if !out.ok() {
                failed += 1;
                if failed == 1 {
                    eprintln!("{}: {:?}", host.alias, out.error);
                }
            }
        }
        pool.close_all().await;
        failed
    });
    let pooled = started.elapsed();
    if failures > 0 {
        return Err(CliError::internal(format!(
            "{failures} of {n} pooled commands failed"
        )));
    }
    let known: Vec<String> = settings
        .known_hosts_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let started = Instant::now();
    for _ in 0..n {
        #[allow(
            clippy::disallowed_methods,
            reason = "the benchmark's baseline is the ssh CLI itself"
        )]
        let status = std::process::Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", known.join(" ")))
            .args(["-o", "LogLevel=ERROR", "-p"])
            .arg(host.port.to_string())
            .arg("-i")
            .arg(&key)
            .arg(format!("{}@{}", host.username, host.hostname))
            .arg("true")
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(|e| CliError::internal(format!("cannot start ssh: {e}")))?;
        if !status.success() {
            return Err(CliError::internal(format!(
                "ssh {} failed: {status}",
                host.alias
            )));
        }
    }
    let cli = started.elapsed();
    let ratio = cli.as_secs_f64() / pooled.as_secs_f64().max(1e-9);
    // With several hosts: fan-out against one host, and the memory of the open connections.
    let fleet_hosts: Vec<crate::ssh::Host> = reg
        .resolve(target)
        .map(|hs| hs.into_iter().cloned().collect())
        .unwrap_or_default();
    let fleet = (fleet_hosts.len() > 1)
        .then(|| rt.block_on(crate::ssh::bench::fleet(&settings, &fleet_hosts)));
    if let Some(f) = &fleet
        && f.failed > 0
    {
        return Err(CliError::internal(format!(
            "uptime failed on {} of {} hosts",
            f.failed, f.hosts
        )));
    }
    // With an inventory: the same fan-out as processes, claw's CLI against Ansible's.
    let versus = match ansible {
        Some(inv) if fleet_hosts.len() > 1 => Some(versus_ansible(target, fleet_hosts.len(), inv)?),
        _ => None,
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let versus_json = versus.as_ref().map(|v| {
        serde_json::json!({
            "claw_ms": ms(v.claw.0), "claw_cpu_ms": ms(v.claw.1),
            "ansible_ms": ms(v.ansible.0), "ansible_cpu_ms": ms(v.ansible.1),
            "speedup": v.ansible.0.as_secs_f64() / v.claw.0.as_secs_f64().max(1e-9),
        })
    });
    let fleet_json = fleet.as_ref().map(|f| {
        serde_json::json!({
            "hosts": f.hosts,
            "one_host_ms": f.one.as_millis() as u64,
            "all_hosts_ms": f.all.as_millis() as u64,
            "one_host_cpu_ms": ms(f.one_cpu),
            "all_hosts_cpu_ms": ms(f.all_cpu),
            "one_host_sshd_cpu_ms": ms(f.one_sshd_cpu),
            "all_hosts_sshd_cpu_ms": ms(f.all_sshd_cpu),
            "fan_out_ratio": f.all.as_secs_f64() / f.one.as_secs_f64().max(1e-9),
            "connections": f.connections,
            "rss_before_kib": f.rss_before_kib,
            "rss_with_connections_kib": f.rss_with_connections_kib,
        })
    });
    if json {
        super::output::print_json(&serde_json::json!({
            "fleet": fleet_json,
            "versus_ansible": versus_json,
            "host": host.alias,
            "commands": n,
            "pool_ms": pooled.as_millis() as u64,
            "ssh_cli_ms": cli.as_millis() as u64,
            "pool_per_command_ms": pooled.as_secs_f64() * 1000.0 / n as f64,
            "ssh_cli_per_command_ms": cli.as_secs_f64() * 1000.0 / n as f64,
            "speedup": ratio,
            "connections_opened": pool.opened(),
        }));
        return Ok(());
    }
    println!(
        "ssh: {n} sequential `true` on {} ({})",
        host.alias,
        host.address()
    );
    println!(
        "  claw pool (1 connection)   {:>8.1} ms total  {:>7.2} ms/command",
        pooled.as_secs_f64() * 1000.0,
        pooled.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "  ssh CLI, no ControlMaster  {:>8.1} ms total  {:>7.2} ms/command",
        cli.as_secs_f64() * 1000.0,
        cli.as_secs_f64() * 1000.0 / n as f64
    );
    println!("  speedup                    {ratio:>8.1}x");
    if let Some(f) = &fleet {
        println!(
            "fleet: `uptime` on {} hosts at once {:.1} ms, on one host {:.1} ms: {:.2}x one host's",
            f.hosts,
            f.all.as_secs_f64() * 1000.0,
            f.one.as_secs_f64() * 1000.0,
            f.all.as_secs_f64() / f.one.as_secs_f64().max(1e-9)
        );
        println!(
            "  claw's CPU {:.1} ms for all, {:.1} ms for one; the local sshd's CPU {:.1} ms for all, {:.1} ms for one",
            ms(f.all_cpu),
            ms(f.one_cpu),
            ms(f.all_sshd_cpu),
            ms(f.one_sshd_cpu)
        );
        println!(
            "  RSS {:.1} MiB before, {:.1} MiB with {} pooled connections ({:+.1} MiB)",
            f.rss_before_kib as f64 / 1024.0,
            f.rss_with_connections_kib as f64 / 1024.0,
            f.connections,
            (f.rss_with_connections_kib as f64 - f.rss_before_kib as f64) / 1024.0
        );
    }
    if let Some(v) = &versus {
        println!(
            "`uptime` on {} hosts, --parallel/-f {}: `claw ssh run` {:.1} ms (CPU {:.1} ms), `ansible -m command` {:.1} ms (CPU {:.1} ms): {:.1}x faster",
            v.hosts,
            v.hosts,
            ms(v.claw.0),
            ms(v.claw.1),
            ms(v.ansible.0),
            ms(v.ansible.1),
            v.ansible.0.as_secs_f64() / v.claw.0.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

/// `claw ssh run` against `ansible`, each a process, each its (wall, CPU with children).
struct Versus {
    hosts: usize,
    claw: (Duration, Duration),
    ansible: (Duration, Duration),
}

fn versus_ansible(
    target: &str,
    hosts: usize,
    inventory: &std::path::Path,
) -> Result<Versus, CliError> {
    let timed =
        |mut c: std::process::Command, what: &str| -> Result<(Duration, Duration), CliError> {
            let cpu0 = crate::ssh::bench::children_cpu();
            let started = Instant::now();
            let out = c
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| CliError::internal(format!("cannot start {what}: {e}")))?;
            let wall = started.elapsed();
            if !out.status.success() {
                return Err(CliError::internal(format!(
                    "{what} failed ({}): {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            Ok((wall, crate::ssh::bench::children_cpu().saturating_sub(cpu0)))
        };
    let exe = std::env::current_exe()
        .map_err(|e| CliError::internal(format!("cannot find claw's own executable: {e}")))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the benchmark times claw's CLI and Ansible as the user runs them"
    )]
    let (mut claw, mut ansible) = (
        std::process::Command::new(exe),
        std::process::Command::new("ansible"),
    );
    let f = hosts.to_string();
    claw.args(["ssh", "run", "--parallel", &f, target, "uptime"]);
    ansible
        .arg(target)
        .arg("-i")
        .arg(inventory)
        .args(["-m", "command", "-a", "uptime", "-f", &f])
        .env("ANSIBLE_HOST_KEY_CHECKING", "True");
    Ok(Versus {
        hosts,
        claw: timed(claw, "claw ssh run")?,
        ansible: timed(ansible, "ansible")?,
    })
}

fn browser_bench(rounds: usize, json: bool) -> CliResult {
    let scratch = scratch_dir()?;
    let rt = super::runtime()?;
    let result = rt.block_on(crate::browser::bench::run(&scratch, rounds));
    drop(rt);
    let _ = std::fs::remove_dir_all(&scratch);
    let r = result.map_err(CliError::internal)?;
    if json {
        super::output::print_json(&r.json());
        return Ok(());
    }
    println!("browser: goto + extract on a local page, {rounds} rounds each way (medians)");
    println!(
        "  cold start to the first page  {:>8.1} ms",
        r.cold_start.as_secs_f64() * 1000.0
    );
    println!(
        "  claw, as a step (own tab)     {:>8.2} ms",
        r.claw_median.as_secs_f64() * 1000.0
    );
    println!(
        "  chromiumoxide directly        {:>8.2} ms",
        r.direct_median.as_secs_f64() * 1000.0
    );
    println!(
        "  ratio                         {:>8.2}x (target <= 1.3x)",
        r.ratio()
    );
    println!(
        "  claw's peak RSS               {:>8.1} MiB (Chromium's processes apart)",
        r.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}
