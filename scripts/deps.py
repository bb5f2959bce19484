#!/usr/bin/env python3
"""The module dependency picture of claw, counted from the source.

Every `crate::a::b` path in a file under src/ (in `use` lines and inline, comments and strings
left out) and every `super::` path is an arrow from the file's top-level module to the top-level
module it names. Each top-level module has a layer (LAYERS below, lowest first); an arrow from a
module to one in a higher layer runs upward. Cycles are counted twice: between top-level modules,
and between files of different top-level modules.

    scripts/deps.py            the picture: layers, arrows, upward arrows, cycles
    scripts/deps.py --check    the same, exit 1 if any arrow runs upward or any cycle exists
    scripts/deps.py --edges    every arrow, one per line, with the files behind it

CI runs `--check` (tests/architecture.rs), so an arrow that breaks the layering fails the build.
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lowest first. A module may use any module in a lower layer, or in its own layer (no cycles).
LAYERS = [
    # Foundations: know nothing of workflows, runs or triggers.
    ["fsutil", "redact", "time", "diagnostic", "secret", "yaml", "expr", "params"],
    # Where things are and what is kept: paths, settings, the environment; the run store; the
    # audit trail; the log subscriber.
    ["config", "store", "audit", "trace"],
    # Secrets; the pure schedule math and catch-up planner (no clock, no processes).
    ["vault", "scheduler"],
    # Running processes: the supervisor, skills.
    ["proc", "skills"],
    # Step kinds: each one's keys, model, loading, input preparation and execution.
    ["steps"],
    # The workflow model, built from files by its loader, and the catalogue that finds them.
    ["workflow"],
    # The engine: runs, the DAG, recording every transition.
    ["engine"],
    # What starts runs: cron, watchers, webhooks (and the launcher they share).
    ["triggers"],
    # The long-running daemon.
    ["serve"],
    # Front ends.
    ["cli"],
    # The crate root.
    ["main", "lib"],
]


CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
SUPER_PATH = re.compile(r"\b((?:super::)+)([a-z_][a-z0-9_]*)?")
# `use crate::{a, b::c}` groups.
CRATE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


# Modules of earlier layouts, placed where their code lives now, so that the script measures an
# older commit with the same yardstick (`git worktree add /tmp/old <commit>`, then run it there).
LEGACY = {"launch": "triggers", "watch": "triggers", "webhook": "triggers"}


def layer_of(module):
    module = LEGACY.get(module, module)
    for i, names in enumerate(LAYERS):
        if module in names:
            return i
    return None


def files():
    for dirpath, _, names in os.walk(ROOT):
        for n in sorted(names):
            if n.endswith(".rs"):
                yield os.path.join(dirpath, n)


def module_path(path):
    """`src/engine/run/waits.rs` -> ['engine', 'run', 'waits']; `mod.rs` names its folder."""
    rel = os.path.relpath(path, ROOT)
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def strip(text):
    """The code of a file without comments, string and character literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (m := re.match(r'b?r(#*)"', text[i:i + 260])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            i = n if j < 0 else j + len(close)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^'\\])'", text[i:i + 12])):
            i += m.end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def references(path):
    """Top-level modules a file names, each with how often."""
    me = module_path(path)
    text = strip(open(path, encoding="utf-8").read())
    out = []
    for m in CRATE_PATH.finditer(text):
        out.append(m.group(1))
    for g in CRATE_GROUP.finditer(text):
        for item in g.group(1).split(","):
            item = item.strip()
            if item:
                out.append(re.split(r"::|\s", item)[0])
    for m in SUPER_PATH.finditer(text):
        ups = m.group(1).count("super::")
        # A file's own module is its path; `super` is its parent. (`mod.rs` is its folder.)
        base = me[:-ups] if ups <= len(me) else []
        target = base + ([m.group(2)] if m.group(2) else [])
        if target:
            out.append(target[0])
    top = me[0] if me else "lib"
    return top, [t for t in out if t and t != "self"]


def scc(graph):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                comps.append(sorted(comp))
    return comps


def main():
    args = sys.argv[1:]
    tops = {module_path(p)[0] if module_path(p) else "lib" for p in files()}
    edges = defaultdict(set)  # (from, to) -> files
    file_graph = defaultdict(set)
    file_of = {}
    for p in files():
        rel = os.path.relpath(p, ROOT)
        file_of[tuple(module_path(p))] = rel
    for p in files():
        rel = os.path.relpath(p, ROOT)
        top, refs = references(p)
        file_graph.setdefault(rel, set())
        for r in refs:
            if r not in tops or r == top:
                continue
            edges[(top, r)].add(rel)
        # File-level arrows across top-level modules: the longest module path a `crate::` path names.
        text = strip(open(p, encoding="utf-8").read())
        for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text):
            parts = m.group(1).split("::")
            for n in range(len(parts), 0, -1):
                target = file_of.get(tuple(parts[:n]))
                if target:
                    if target != rel and parts[0] != top:
                        file_graph[rel].add(target)
                    break

    unknown = sorted(t for t in tops if layer_of(t) is None)
    upward = sorted(
        (a, b) for (a, b) in edges if layer_of(a) is not None and layer_of(b) is not None
        and layer_of(b) > layer_of(a)
    )
    module_graph = defaultdict(set)
    for a, b in edges:
        module_graph[a].add(b)
    for t in tops:
        module_graph.setdefault(t, set())
    module_cycles = [c for c in scc(module_graph) if len(c) > 1]
    file_cycles = [c for c in scc(file_graph) if len(c) > 1]

    if "--edges" in args:
        for (a, b), fs in sorted(edges.items()):
            mark = "  UPWARD" if (a, b) in upward else ""
            print(f"{a} -> {b}{mark}: {', '.join(sorted(fs))}")
        return 0

    print("layers (lowest first):")
    for i, names in enumerate(LAYERS):
        present = [n for n in names if n in tops]
        if present:
            print(f"  {i}: {' '.join(present)}")
    print(f"arrows between top-level modules: {len(edges)}")
    print(f"upward arrows: {len(upward)}")
    for a, b in upward:
        print(f"  {a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)}): {', '.join(sorted(edges[(a, b)]))}")
    print(f"cycles between top-level modules: {len(module_cycles)}")
    for c in module_cycles:
        print(f"  {' <-> '.join(c)}")
    print(f"cycles between files of different modules: {len(file_cycles)}")
    for c in file_cycles:
        print(f"  {' <-> '.join(c)}")
    if unknown:
        print(f"modules without a layer: {' '.join(unknown)}")
    if "--check" in args and (upward or module_cycles or file_cycles or unknown):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
