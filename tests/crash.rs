//! `kill -9` at random moments: no run is lost, no finished step runs again, and no
//! non-idempotent step is re-run without a person's decision.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// A small deterministic PRNG (xorshift64*), seeded per run and printed, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Steps append one line per execution to `<counts>/<step>`.
fn workflow(counts: &Path) -> String {
    let c = counts.display();
    format!(
        r#"name: crashy
max_parallel: 2
steps:
  - name: prepare
    idempotent: true
    command: echo run >> {c}/prepare; sleep 0.05
  - name: charge-card
    command: echo run >> {c}/charge-card; sleep 0.15
  - name: left
    needs: [charge-card]
    idempotent: true
    command: echo run >> {c}/left; sleep 0.1
  - name: right
    needs: [charge-card]
    command: echo run >> {c}/right; sleep 0.12
  - name: report
    needs: [left, right]
    idempotent: true
    command: echo run >> {c}/report
"#
    )
}

const STEPS: [&str; 5] = ["prepare", "charge-card", "left", "right", "report"];
const NON_IDEMPOTENT: [&str; 2] = ["charge-card", "right"];

fn counts(dir: &Path) -> HashMap<&'static str, usize> {
    STEPS
        .iter()
        .map(|s| (*s, read(&dir.join(s)).lines().count()))
        .collect()
}

fn statuses(env: &Env, run: &str) -> HashMap<String, String> {
    env.step_statuses(run).into_iter().collect()
}

#[test]
fn kill_9_loses_nothing_and_never_silently_reruns() {
    let cycles: u64 = std::env::var("CLAW_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed = std::env::var("CLAW_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("crash test: {cycles} cycles, seed {seed} (CLAW_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let env = Env::new();
    let mut approvals_total = 0;
    for cycle in 0..cycles {
        let counts_dir = env.path(&format!("counts-{cycle}"));
        std::fs::create_dir_all(&counts_dir).expect("mkdir");
        env.workflow("crashy", &workflow(&counts_dir));
        let before_runs = env
            .claw(&["run", "list", "--json", "--limit", "1000"])
            .json();
        let before_ids: Vec<String> = before_runs
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();

        let mut child = env.spawn(&["workflow", "run", "crashy", "--quiet"]);
        std::thread::sleep(Duration::from_millis(rng.below(700)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Steps live in their own process groups and may still be finishing: let them.
        std::thread::sleep(Duration::from_millis(250));

        let after = env
            .claw(&["run", "list", "--json", "--limit", "1000"])
            .json();
        let new_runs: Vec<String> = after
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                    .filter(|id| !before_ids.contains(id))
                    .collect()
            })
            .unwrap_or_default();
        let snapshot_counts = counts(&counts_dir);
        if new_runs.is_empty() {
            // Killed before the run was recorded: then nothing may have run either.
            assert!(
                snapshot_counts.values().all(|&n| n == 0),
                "cycle {cycle}: steps ran but no run was recorded: {snapshot_counts:?}"
            );
            continue;
        }
        assert_eq!(new_runs.len(), 1, "cycle {cycle}: one run per invocation");
        let run = new_runs[0].clone();
        let snapshot = statuses(&env, &run);
        let finished_before: Vec<String> = snapshot
            .iter()
            .filter(|(_, st)| st.as_str() == "succeeded")
            .map(|(n, _)| n.clone())
            .collect();
        let run_status = env.show(&run)["status"].as_str().unwrap_or("").to_owned();

        // Resume it (unless the killed process had already finished it), possibly crashing again.
        let mut approvals: HashMap<String, usize> = HashMap::new();
        if !matches!(run_status.as_str(), "succeeded" | "failed" | "cancelled") {
            let mut resumer = env.spawn(&["run", "resume", &run, "--quiet"]);
            if rng.below(4) == 0 {
                std::thread::sleep(Duration::from_millis(rng.below(400)));
                let _ = resumer.kill();
                let _ = resumer.wait();
                std::thread::sleep(Duration::from_millis(250));
                resumer = env.spawn(&["run", "resume", &run, "--quiet"]);
            }
            // Answer decisions until the run finishes.
            let done = wait_for(Duration::from_secs(30), || {
                let shown = env.show(&run);
                let status = shown["status"].as_str().unwrap_or("").to_owned();
                if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
                    return Some(status);
                }
                for s in shown["steps"].as_array().into_iter().flatten() {
                    if s["status"] == "interrupted" && s["decision"].is_null() {
                        let name = s["name"].as_str().unwrap_or_default().to_owned();
                        assert!(
                            NON_IDEMPOTENT.contains(&name.as_str()),
                            "cycle {cycle}: idempotent step {name} waits for a decision"
                        );
                        env.claw(&["run", "approve", &run, &name, "--no-wait"])
                            .expect_code(0);
                        *approvals.entry(name).or_default() += 1;
                        approvals_total += 1;
                    }
                }
                None
            });
            let _ = resumer.wait();
            assert_eq!(
                done.as_deref(),
                Some("succeeded"),
                "cycle {cycle}: run {run} did not finish: {}",
                env.show(&run)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
        let final_counts = counts(&counts_dir);
        let final_status = statuses(&env, &run);
        for step in STEPS {
            assert_eq!(
                final_status.get(step).map(String::as_str),
                Some("succeeded"),
                "cycle {cycle}: {step}"
            );
            assert!(final_counts[step] >= 1, "cycle {cycle}: {step} never ran");
        }
        // A step recorded as finished before the crash never ran again.
        for step in &finished_before {
            let name = step.as_str();
            assert_eq!(
                final_counts[name], snapshot_counts[name],
                "cycle {cycle}: finished step {name} ran again after resume"
            );
        }
        // A non-idempotent step runs once, plus once per explicit "run it again" decision.
        for step in NON_IDEMPOTENT {
            let allowed = 1 + approvals.get(step).copied().unwrap_or(0);
            assert!(
                final_counts[step] <= allowed,
                "cycle {cycle}: non-idempotent {step} ran {} times with {} approval(s)",
                final_counts[step],
                allowed - 1
            );
        }
    }
    eprintln!("crash test: {approvals_total} decision(s) answered");
}
