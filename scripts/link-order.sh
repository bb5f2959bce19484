#!/usr/bin/env bash
# Writes packaging/claw.order: the functions of the release binary that everyday commands run,
# for the linker to lay out together (see build.rs). Run it after a change that moves much code
# (a new dependency, a toolchain upgrade), then rebuild:
#
#   cargo build --release && scripts/link-order.sh && cargo build --release
#
# Each command below runs under valgrind's callgrind in a scratch home; every function of the
# claw binary it executes is listed (mangled, as the linker names it), those used by the most
# commands first. A name the next build no longer has is skipped by the linker.
set -euo pipefail
cd "$(dirname "$0")/.."
claw="${1:-$PWD/target/release/claw}"
command -v valgrind >/dev/null || { echo "error: valgrind is needed (apt-get install valgrind)" >&2; exit 3; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CLAW_HOME="$work/home" CLAW_ROOT="$work/root"
mkdir -p "$CLAW_ROOT/workflows"
{
  echo "name: chain"
  echo "steps:"
  for i in $(seq 0 19); do
    echo "  - name: s$i"
    echo "    command: echo step $i"
    [ "$i" -gt 0 ] && echo "    needs: [s$((i - 1))]"
  done
} > "$CLAW_ROOT/workflows/chain.yaml"
cat > "$CLAW_ROOT/workflows/features.yaml" <<'YAML'
name: features
params:
  who: {default: world}
steps:
  - name: hello
    command: |
      echo '{"greeting": "hello ${{ params.who }}"}'
    outputs: json
  - name: check
    if: ${{ steps.hello.outputs.greeting != '' }}
    command: test -n "$GREETING"
    env: {GREETING: "${{ steps.hello.outputs.greeting }}"}
    retry: 1
  - name: fails
    command: exit 1
    on_failure: continue
  - name: after
    condition: always
    command: echo done
YAML
n=0
trace() {
  n=$((n + 1))
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$n" "$claw" "$@" \
    >/dev/null 2>&1 || true
}
trace --version
trace --help
trace workflow run chain
trace workflow run features
trace workflow validate chain
trace workflow list
trace run list
trace run show "$(CLAW_HOME="$work/home" "$claw" run list --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])' 2>/dev/null || echo none)"
trace status
trace audit verify
trace cron list
trace doctor
python3 - "$claw" "$work"/cg.* > packaging/claw.order <<'PY'
import collections, os, re, subprocess, sys
binary = os.path.realpath(sys.argv[1])
# The binary's own symbols: callgrind also names code it cannot map to one ("(below main)").
defined = {line.split()[-1] for line in subprocess.run(
    ["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines()
    if len(line.split()) == 3}
uses = collections.Counter()
for path in sys.argv[2:]:
    names, obs, ob, seen = {}, {}, None, set()
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3) is not None:
                obs[m.group(2)] = m.group(3)
            if m.group(1) == "ob":
                ob = obs.get(m.group(2))
            continue
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3) is not None:
                names[m.group(2)] = m.group(3)
            if m.group(1) == "fn" and ob and os.path.realpath(ob) == binary:
                name = re.sub(r"'\d+$", "", names.get(m.group(2), ""))
                if name in defined:
                    seen.add(name)
    uses.update(seen)
for name, _ in sorted(uses.items(), key=lambda kv: (-kv[1], kv[0])):
    print(name)
PY
echo "packaging/claw.order: $(wc -l < packaging/claw.order) functions from $n commands"
