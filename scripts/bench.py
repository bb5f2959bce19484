#!/usr/bin/env python3
"""claw measured as a user runs it: whole processes, start-up included, each figure beside a
baseline measured in the same run on the same machine.

  python3 scripts/bench.py [--claw target/release/claw] [--rounds 7] [--only NAME ...]

Benchmarks (each prints its figures and what they include):
  steps40   `claw workflow run` of 40 sequential `true` steps, as a whole process (start-up,
            loading, the store's commits, the audit log, exit), against 40 `/bin/sh -c true`
            spawns made by this (another) process; plus claw's peak RSS.
  steps     the same shape at 1,000 and 10,000 steps (time per step, and the 10,000 against the
            1,000: linear growth is 10x), beside 1,000 direct spawns.
  history   `claw run show ID` and `claw workflow run` (one step) with 2,000 runs kept against the
            same commands on a store holding a single run.
  validate  `claw workflow validate` of 1,000- and 10,000-step chains whose every step reads the
            first step's output (linear growth is 10x).
  web       `claw bench web`: authenticated webhook deliveries through a real `claw serve` whose
            runs execute meanwhile, against `GET /healthz` on the same daemon.

Nothing here is a test: figures vary with the machine's load. Use a release build.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def spawns(n):
    """n direct spawns of `/bin/sh -c true` from this process, with piped output like claw's."""
    t = time.perf_counter()
    for _ in range(n):
        subprocess.run(["/bin/sh", "-c", "true"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - t


def claw(binary, home, *args, check=True):
    """One claw process; returns (seconds, peak RSS of that child in KiB)."""
    env = dict(os.environ, CLAW_HOME=home, CLAW_ROOT=home, NO_COLOR="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    p = subprocess.run([binary, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if check and p.returncode != 0:
        sys.exit(f"claw {' '.join(args)} failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    # ru_maxrss of children is the largest so far: measure on a fresh interpreter child when
    # the figure matters (see rss()).
    return dt, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def rss(binary, home, *args):
    """Peak RSS (KiB) of one claw process, read through GNU time's %M when present."""
    if shutil.which("/usr/bin/time") or os.path.exists("/usr/bin/time"):
        env = dict(os.environ, CLAW_HOME=home, CLAW_ROOT=home)
        p = subprocess.run(["/usr/bin/time", "-f", "%M", binary, *args], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            return int(p.stderr.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None
    return None


def chain(path, n, needs=True):
    with open(path, "w") as f:
        f.write(f"name: {os.path.basename(path)[:-5]}\nsteps:\n")
        for i in range(n):
            f.write(f"  - name: s{i}\n    command: \"true\"\n")


def median_of(rounds, fn):
    return statistics.median(fn() for _ in range(rounds))


def bench_steps40(binary, rounds, tmp):
    home = os.path.join(tmp, "steps40")
    os.makedirs(home)
    wf = os.path.join(home, "steps40.yaml")
    chain(wf, 40)
    # Warm-up: the first run creates the store; the page cache holds the binary after it.
    for _ in range(3):
        claw(binary, home, "workflow", "run", wf)
    base, ours = [], []
    for _ in range(rounds):
        base.append(spawns(40))
        ours.append(claw(binary, home, "workflow", "run", wf)[0])
    b, o = statistics.median(base), statistics.median(ours)
    peak = rss(binary, home, "workflow", "run", wf)
    print("steps40: `claw workflow run` of 40 sequential `true` steps, whole process")
    print(f"  40 spawns from another process (baseline) {b * 1000:8.1f} ms")
    print(f"  claw workflow run                         {o * 1000:8.1f} ms")
    print(f"  ratio                                     {o / b:8.2f}x   (target <= 1.5x)")
    print(f"  per-step overhead                         {(o - b) / 40 * 1000:8.3f} ms")
    if peak:
        print(f"  peak RSS of claw                          {peak / 1024:8.1f} MiB (target < 10 MiB)")


def bench_steps(binary, rounds, tmp):
    home = os.path.join(tmp, "steps")
    os.makedirs(home)
    times = {}
    for n in (1000, 10000):
        wf = os.path.join(home, f"chain{n}.yaml")
        chain(wf, n)
        times[n] = median_of(max(1, rounds // 3) if n > 1000 else rounds,
                             lambda: claw(binary, home, "workflow", "run", wf)[0])
    base = median_of(max(1, rounds // 3), lambda: spawns(1000))
    print("steps: sequential `true` steps, whole process")
    print(f"  1,000 spawns from another process (baseline) {base:8.2f} s")
    print(f"  claw, 1,000 steps                            {times[1000]:8.2f} s "
          f"({times[1000] / base:.2f}x the spawns, {times[1000] / 1000 * 1000:.2f} ms/step)")
    print(f"  claw, 10,000 steps                           {times[10000]:8.2f} s "
          f"({times[10000] / 10000 * 1000:.2f} ms/step)")
    print(f"  10,000 against 1,000                         {times[10000] / times[1000]:8.2f}x "
          f"(linear: 10x)")


def bench_history(binary, rounds, tmp):
    results = {}
    wf_text = "name: one\nsteps:\n  - name: a\n    command: \"true\"\n"
    for label, runs in (("empty", 1), ("2000", 2000)):
        home = os.path.join(tmp, f"history-{label}")
        os.makedirs(home)
        with open(os.path.join(home, "claw.yaml"), "w") as f:
            f.write("retention:\n  max_runs: 5000\n")
        wf = os.path.join(home, "one.yaml")
        with open(wf, "w") as f:
            f.write(wf_text)
        for _ in range(runs):
            claw(binary, home, "workflow", "run", wf)
        out = subprocess.run([binary, "run", "list", "--json", "-n", "1"],
                             env=dict(os.environ, CLAW_HOME=home, CLAW_ROOT=home),
                             stdout=subprocess.PIPE, check=True).stdout.decode()
        import json
        listed = json.loads(out)
        listed = listed if isinstance(listed, list) else listed.get("runs", [])
        run_id = listed[0]["id"]
        show = median_of(rounds * 3, lambda: claw(binary, home, "run", "show", run_id)[0])
        run = median_of(rounds * 3, lambda: claw(binary, home, "workflow", "run", wf)[0])
        results[label] = (show, run)
    (s0, r0), (s1, r1) = results["empty"], results["2000"]
    print("history: one store with a single run against one with 2,000 kept")
    print(f"  run show       {s0 * 1000:7.2f} ms -> {s1 * 1000:7.2f} ms  ({s1 / s0:.2f}x; flat is 1.0x)")
    print(f"  workflow run   {r0 * 1000:7.2f} ms -> {r1 * 1000:7.2f} ms  ({r1 / r0:.2f}x; flat is 1.0x)")


def bench_validate(binary, rounds, tmp):
    home = os.path.join(tmp, "validate")
    os.makedirs(home)
    times = {}
    for n in (1000, 10000):
        wf = os.path.join(home, f"reads{n}.yaml")
        with open(wf, "w") as f:
            f.write(f"name: reads{n}\nsteps:\n  - name: s0\n    command: \"echo a=1 >> $CLAW_OUTPUT\"\n")
            for i in range(1, n):
                f.write(f"  - name: s{i}\n    needs: [s{i - 1}]\n"
                        f"    command: \"echo ${{{{ steps.s0.outputs.a }}}}\"\n")
        times[n] = median_of(rounds, lambda: claw(binary, home, "workflow", "validate", wf)[0])
    print("validate: `claw workflow validate`, chains whose every step reads step 0")
    print(f"  1,000 steps   {times[1000] * 1000:8.1f} ms")
    print(f"  10,000 steps  {times[10000] * 1000:8.1f} ms  ({times[10000] / times[1000]:.2f}x; linear: 10x)")


def bench_web(binary, rounds, tmp):
    home = os.path.join(tmp, "web")
    os.makedirs(home)
    env = dict(os.environ, CLAW_HOME=home, CLAW_ROOT=home, NO_COLOR="1")
    print("web: `claw bench web --requests 5000` (16 clients)")
    out = subprocess.run([binary, "bench", "web", "--requests", "5000"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in out.stdout.decode(errors="replace").splitlines():
        print(f"  {line}")


BENCHES = {"steps40": bench_steps40, "steps": bench_steps, "history": bench_history,
           "validate": bench_validate, "web": bench_web}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claw", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "claw"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=None)
    args = ap.parse_args()
    binary = os.path.abspath(args.claw)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not built: cargo build --release")
    with tempfile.TemporaryDirectory(prefix="claw-bench-") as tmp:
        for name in args.only or list(BENCHES):
            BENCHES[name](binary, args.rounds, tmp)


if __name__ == "__main__":
    main()
