#!/usr/bin/env python3
"""The module dependency picture of claw, counted from the source.

Every `crate::a::b` path in a file under src/ (in `use` lines and inline; comments, strings,
raw strings and character literals left out; `use crate::{a::{b, c}, d}` groups expanded at any
depth; `r#` identifiers read as their name) and every `super::` path (resolved from the module it
is written in, inline `mod tests { … }` blocks included) is an arrow from the file's top-level
module to the top-level module it names. In main.rs, `claw::` paths name the library. Each top-level module has a layer (LAYERS below, lowest first); an arrow from a
module to one in a higher layer runs upward. Cycles are counted twice: between top-level modules,
and between files of different top-level modules.

    scripts/deps.py            the picture: layers, arrows, upward arrows, cycles
    scripts/deps.py --check    the same, exit 1 if any arrow runs upward or any cycle exists
    scripts/deps.py --edges    every arrow, one per line, with the files behind it
    scripts/deps.py --self-test  checks the parser on the constructs above

tests/architecture.rs runs `--self-test` and `--check`, so an arrow that breaks the layering fails
the build (the `--check` test is ignored until the step-kind refactor removes the last upward
arrows).
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lowest first. A module may use any module in a lower layer, or in its own layer (no cycles).
LAYERS = [
    # Foundations: know nothing of workflows, runs or triggers.
    ["fsutil", "redact", "time", "diagnostic", "error", "secret", "yaml", "expr", "params", "names"],
    # Where things are and what is kept: paths, settings, the environment; the run store; the
    # audit trail; the log subscriber.
    ["config", "store", "audit", "trace"],
    # Secrets; the pure schedule math and catch-up planner (no clock, no processes).
    ["vault", "scheduler", "msg", "memory", "policy"],
    # Running processes: the supervisor, skills; LLM providers (the claude CLI runs through proc);
    # Chromium.
    ["proc", "skills", "ssh", "llm", "browser"],
    # Step kinds: each one's keys, model, loading, input preparation and execution.
    ["steps"],
    # The workflow model, built from files by its loader, and the catalogue that finds them.
    ["workflow", "packs", "intake"],
    # The engine: runs, the DAG, recording every transition.
    ["engine"],
    # What starts runs: cron, watchers, webhooks (and the launcher they share).
    ["triggers"],
    # The long-running daemon, claw as MCP tools, and the dashboard the daemon serves (web: pages
    # and /api/v1).
    ["serve", "mcp", "web", "worker"],
    # Front ends.
    ["cli"],
    # The crate root.
    ["main", "lib"],
]


# An identifier, raw (`r#type`) or not; the tokens a path is made of.
TOKEN = re.compile(r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*|::|[{}(),;*$]|\S")


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


def crate_path(path):
    """The module a file is, from the crate root: lib.rs and main.rs are roots themselves."""
    parts = module_path(path)
    return [] if parts in (["lib"], ["main"]) else parts


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


def paths(code, me, roots=("crate",)):
    """Every module path `code` (already stripped) names, from the crate root, as a list of
    segments: `crate::a::b` -> ['a', 'b']; `use crate::{a::{b, c}, d}` -> ['a', 'b'], ['a', 'c'],
    ['d']; `super::x` in module ['m', 'n'] -> ['m', 'x'], and inside an inline `mod t { … }` of
    that file -> ['m', 'n', 'x']. `roots` are the names that start a path from the crate root."""
    toks = TOKEN.findall(code)
    out = []
    mods = []  # (brace depth at the inline module's opening, its name)
    depth = 0

    def name(tok):
        return tok[2:] if tok.startswith("r#") else tok

    def is_ident(tok):
        return bool(re.match(r"(?:r#)?[A-Za-z_]", tok))

    def tail(i, prefix):
        """Parses what follows `prefix::` at toks[i]; returns the paths and the next index."""
        if i >= len(toks):
            return [prefix], i
        tok = toks[i]
        if tok == "{":
            found, i = [], i + 1
            while i < len(toks) and toks[i] != "}":
                if toks[i] == ",":
                    i += 1
                    continue
                if toks[i] == "self":
                    found.append(prefix)
                    i += 1
                elif toks[i] == "{" or toks[i] == "*" or is_ident(toks[i]):
                    got, i = tail(i, prefix)
                    found += got
                else:
                    i += 1
                # `a as b`: the alias names nothing.
                if i + 1 < len(toks) and toks[i] == "as":
                    i += 2
            return (found or [prefix]), i + 1
        if tok == "*":
            return [prefix], i + 1
        if is_ident(tok):
            here = prefix + [name(tok)]
            if i + 1 < len(toks) and toks[i + 1] == "::":
                return tail(i + 2, here)
            return [here], i + 1
        return [prefix], i

    i = 0
    while i < len(toks):
        tok = toks[i]
        after_sep = i > 0 and toks[i - 1] == "::"
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if mods and mods[-1][0] == depth:
                mods.pop()
        elif tok == "mod" and i + 2 < len(toks) and is_ident(toks[i + 1]) and toks[i + 2] == "{":
            mods.append((depth, name(toks[i + 1])))
            depth += 1
            i += 3
            continue
        elif not after_sep and tok in roots and i + 1 < len(toks) and toks[i + 1] == "::":
            got, i = tail(i + 2, [])
            out += got
            continue
        elif not after_sep and tok == "super" and i + 1 < len(toks) and toks[i + 1] == "::":
            here = me + [m for _, m in mods]
            ups = 0
            while i + 1 < len(toks) and toks[i] == "super" and toks[i + 1] == "::":
                ups, i = ups + 1, i + 2
            base = here[:-ups] if ups <= len(here) else []
            got, i = tail(i, base)
            out += got
            continue
        i += 1
    return [p for p in out if p]


def references(path):
    """The top-level module of a file, and every module path it names (from the crate root)."""
    me = crate_path(path)
    roots = ("crate", "claw") if module_path(path) == ["main"] else ("crate",)
    text = strip(open(path, encoding="utf-8").read())
    top = module_path(path)[0] if module_path(path) else "lib"
    return top, paths(text, me, roots)


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


def self_test():
    """The parser on the constructs that could confuse it; exit 1 on the first failure."""
    failures = []

    def expect(what, got, want):
        if got != want:
            failures.append(f"{what}:\n  got  {got!r}\n  want {want!r}")

    def named(code, me=("m", "f"), roots=("crate",)):
        return paths(strip(code), list(me), roots)

    # Literals and comments hide what they contain, and only that.
    expect("line comment", named("// crate::a\nuse crate::b;"), [["b"]])
    expect("doc comment", named("/// [`crate::a`]\n//! crate::b\nfn f() {}"), [])
    expect("nested block comment", named("/* crate::a /* crate::b */ crate::c */ crate::d::x"), [["d", "x"]])
    expect("string", named('let s = "crate::a \\" crate::b"; crate::c::f();'), [["c", "f"]])
    expect("raw string", named('let s = r"crate::a \\"; crate::b::f();'), [["b", "f"]])
    expect("raw string with hashes", named('let s = r#"say "crate::a" "#; crate::b::f();'), [["b", "f"]])
    expect("byte strings", named('let s = (b"crate::a", br#"crate::b"#); crate::c::f();'), [["c", "f"]])
    expect("char literals", named("""let q = ('"', '\\'', '{', b'"', '\\u{7B}'); crate::a::f();"""), [["a", "f"]])
    expect("lifetimes", named("fn f<'a>(x: &'a str) -> &'a str { crate::a::g(x) }"), [["a", "g"]])
    expect("ident ending in r before a string", named('let for_r = 1; f(r"x"); crate::a::b();'), [["a", "b"]])
    # Paths.
    expect("nested groups", named("use crate::{a::{b, c::{d, e}}, f, g::h as i, j::*, self};"),
           [["a", "b"], ["a", "c", "d"], ["a", "c", "e"], ["f"], ["g", "h"], ["j"]])
    expect("multi-line group", named("use crate::{\n    a::B,\n    c::{\n        d,\n    },\n};"),
           [["a", "B"], ["c", "d"]])
    expect("group with self", named("use crate::a::{self, b};"), [["a"], ["a", "b"]])
    expect("raw identifiers", named("use crate::r#type::r#match; crate::{r#async::x};"),
           [["type", "match"], ["async", "x"]])
    expect("inline path", named("let t = crate::time::at(crate::time::now_ms());"),
           [["time", "at"], ["time", "now_ms"]])
    expect("$crate in a macro", named("macro_rules! m { () => { $crate::a::b!() } }"), [["a", "b"]])
    expect("not a root after ::", named("use other::crate::a;"), [])
    expect("super", named("use super::x; use super::super::y::{z, w};", me=("m", "f")),
           [["m", "x"], ["y", "z"], ["y", "w"]])
    expect("super from mod.rs", named("use super::engine::Engine;", me=("cli",)), [["engine", "Engine"]])
    expect("super in an inline module", named(
        "fn a() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::g;\n"
        "    fn t() { if x { y } }\n}\nuse super::h;", me=("m", "f")),
        [["m", "f"], ["m", "g"], ["m", "h"]])
    expect("nested inline modules", named("mod a { mod b { use super::super::c; } use super::d; }", me=("m",)),
           [["m", "c"], ["m", "d"]])
    expect("super group", named("use super::{a, b::c};", me=("m", "f")), [["m", "a"], ["m", "b", "c"]])
    expect("main names the library", named("fn main() { claw::cli::run(x) }", me=(), roots=("crate", "claw")),
           [["cli", "run"]])
    for f in failures:
        print(f)
    print(f"self-test: {'FAILED' if failures else 'ok'} ({len(failures)} failure(s))")
    return 1 if failures else 0


def main():
    args = sys.argv[1:]
    if "--self-test" in args:
        return self_test()
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
        for parts in refs:
            if parts[0] not in tops or parts[0] == top:
                continue
            edges[(top, parts[0])].add(rel)
            # File-level arrows across top-level modules: the longest module path it names.
            for n in range(len(parts), 0, -1):
                target = file_of.get(tuple(parts[:n]))
                if target:
                    if target != rel:
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
