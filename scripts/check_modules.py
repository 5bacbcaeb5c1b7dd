#!/usr/bin/env python3
"""Checks the shape of the Rust crates: no import circle between top-level modules, no long files.

For each crate (a directory with `src/lib.rs`), a top-level module is a file `src/NAME.rs` or a
directory `src/NAME/`. Module A depends on module B when any file of A names `crate::B` (in a
`use`, a path, or a grouped `use crate::{B, ...}`), or reaches it with a `super::` chain that leaves
A. The dependency graph must be acyclic; every cycle is printed as `a -> b -> a` with one place
that makes each edge. Test code (`#[cfg(test)]` modules) counts too: a test that needs a module
above its own is a sign the code is in the wrong place.

It also fails on any `.rs` file over the line limit (600 by default; `--max-lines`), and on a
top-level module without a `//!` doc (the module docs are what docs/architecture.md points to).
An exported macro (`crate::match_data!`) counts as a use of the module that defines it;
`$crate::` inside a macro body is not an edge of the module that holds the macro.

Usage: scripts/check_modules.py [--max-lines N] [CRATE_DIR ...]   (default: every workspace crate)
       scripts/check_modules.py --graph CRATE_DIR                  (print the module graph as edges)
Exit status 0 when clean, 1 when a rule is broken.

Why a script and not `cargo modules --acyclic`: that tool counts an item and its own `impl` (a type
and its `new`) as a cycle, so it rejects every crate; here only edges between top-level modules count.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CRATE_PATH = re.compile(rf"(?<!\$)\bcrate::({IDENT})")
CRATE_GROUP = re.compile(r"(?<!\$)\bcrate::\{")
MACRO_EXPORT = re.compile(rf"#\[macro_export\]\s*(?:#\[[^\]]*\]\s*)*macro_rules!\s*({IDENT})")
SUPER_CHAIN = re.compile(rf"\b((?:super::)+)({IDENT})")
LINE_COMMENT = re.compile(r"//.*$")


def shown(path: Path) -> str:
    """A path as printed: relative to the repository when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def strip_comments(text: str) -> str:
    """Drops // and /* */ comments (doc comments mention modules without depending on them)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(LINE_COMMENT.sub("", line) for line in text.splitlines())


def group_heads(text: str, start: int) -> list[str]:
    """The first identifier of each item of a `{...}` group that opens at `start`."""
    depth, item, heads, i = 0, "", [], start
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and ch == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += ch
        i += 1
    out = []
    for h in heads:
        m = re.match(rf"\s*({IDENT})", h)
        if m and m.group(1) not in ("self", "super", "crate"):
            out.append(m.group(1))
    return out


def top_modules(src: Path) -> dict[str, list[Path]]:
    mods: dict[str, list[Path]] = {}
    for entry in sorted(src.iterdir()):
        if entry.is_file() and entry.suffix == ".rs" and entry.stem not in ("lib", "main"):
            mods.setdefault(entry.stem, []).append(entry)
        elif entry.is_dir():
            mods.setdefault(entry.name, []).extend(sorted(entry.rglob("*.rs")))
    return mods


def module_depth(src: Path, file: Path) -> int:
    """How many `super::` steps lead from this file's module to the crate root."""
    rel = file.relative_to(src)
    parts = list(rel.parts)
    if parts[-1] == "mod.rs":
        parts = parts[:-1]
    else:
        parts[-1] = parts[-1][:-3]
    return len(parts)


def edges_of(src: Path) -> dict[tuple[str, str], str]:
    mods = top_modules(src)
    edges: dict[tuple[str, str], str] = {}
    # An exported macro lives at the crate root but belongs to the module that defines it.
    macro_home = {
        m.group(1): name
        for name, files in mods.items()
        for file in files
        for m in MACRO_EXPORT.finditer(file.read_text())
    }
    for name, files in mods.items():
        for file in files:
            text = strip_comments(file.read_text())
            targets: list[tuple[str, int]] = []
            for m in CRATE_PATH.finditer(text):
                targets.append((m.group(1), m.start()))
            for m in CRATE_GROUP.finditer(text):
                for head in group_heads(text, m.end() - 1):
                    targets.append((head, m.start()))
            depth = module_depth(src, file)
            for m in SUPER_CHAIN.finditer(text):
                steps = m.group(1).count("super::")
                # Inline `mod tests` adds a level the file path does not show; a chain that
                # only reaches this file's own module or a parent inside it stays inside.
                if steps >= depth and steps <= depth + 1:
                    targets.append((m.group(2), m.start()))
            for target, pos in targets:
                target = macro_home.get(target, target)
                if target in mods and target != name:
                    line = text.count("\n", 0, pos) + 1
                    edges.setdefault((name, target), f"{shown(file)}:{line}")
    return edges


def cycles(edges: dict[tuple[str, str], str]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    # Tarjan's strongly connected components; each component of more than one node holds a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    result = []
    for comp in comps:
        # One concrete cycle inside the component, found by a walk that stays in it.
        members = set(comp)
        path = [comp[0]]
        seen = {comp[0]}
        while True:
            nxt = sorted(w for w in graph[path[-1]] if w in members)
            back = [w for w in nxt if w == comp[0]]
            if back and len(path) > 1:
                result.append(path + [comp[0]])
                break
            fresh = [w for w in nxt if w not in seen]
            if not fresh:
                result.append(path + [nxt[0]] if nxt else path)
                break
            path.append(fresh[0])
            seen.add(fresh[0])
    return result


def crates() -> list[Path]:
    return sorted(p.parent.parent for p in ROOT.glob("*/src/lib.rs"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crates", nargs="*", type=Path)
    ap.add_argument("--max-lines", type=int, default=600)
    ap.add_argument("--graph", action="store_true", help="print each crate's module edges")
    args = ap.parse_args()
    failed = False
    for crate in [c.resolve() for c in args.crates] or crates():
        src = crate / "src"
        edges = edges_of(src)
        if args.graph:
            print(f"# {crate.name}")
            for (a, b), where in sorted(edges.items()):
                print(f"{a} -> {b}    ({where})")
        for cycle in cycles(edges):
            failed = True
            print(f"{crate.name}: import circle: {' -> '.join(cycle)}")
            for a, b in zip(cycle, cycle[1:]):
                print(f"    {a} -> {b} at {edges[(a, b)]}")
        for name, files in top_modules(src).items():
            head = files[0] if files[0].name in ("mod.rs", f"{name}.rs") else src / name / "mod.rs"
            if head.exists() and not head.read_text().lstrip().startswith("//!"):
                failed = True
                print(f"{shown(head)}: top-level module '{name}' has no //! doc")
        for file in sorted(crate.rglob("*.rs")):
            if "target" in file.parts:
                continue
            n = sum(1 for _ in file.open())
            if n > args.max_lines:
                failed = True
                print(f"{shown(file)}: {n} lines (limit {args.max_lines})")
    if not failed and not args.graph:
        print("modules: no import circle, no file over the limit")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
