r"""The codebase's shape, measured: module sizes, the longest functions and classes, binary sizes.

    python -m benchmarks.code_size

prints the largest library modules, every function or class over ``--max_def`` lines, every
binary over ``--max_binary`` lines and every library module over ``--max_module`` lines (the
limits of the engine redesign, issue 9), and exits 1 when a limit is broken.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]

flags.DEFINE_integer("max_module", 450, "Lines allowed per library module.")
flags.DEFINE_integer("max_def", 120, "Lines allowed per function or class.")
flags.DEFINE_integer("max_binary", 50, "Lines allowed per binary (experiments/*.py that call app.run).")
flags.DEFINE_integer("top", 8, "How many of the largest modules to list.")
FLAGS = flags.FLAGS


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def long_defs(path: Path, limit: int) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function or class in ``path`` longer than ``limit``."""
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                n = child.end_lineno - child.lineno + 1
                name = f"{prefix}{child.name}"
                if n > limit:
                    out.append((name, n))
                visit(child, name + ".")

    visit(ast.parse(path.read_text()), "")
    return out


def main(argv):
    del argv
    library = sorted((ROOT / "lrgen").rglob("*.py"))
    binaries = [p for p in sorted((ROOT / "experiments").glob("*.py")) if "app.run(" in p.read_text()]
    sizes = sorted(((lines(p), p.relative_to(ROOT)) for p in library), reverse=True)
    print(f"library: {len(library)} modules, {sum(n for n, _ in sizes)} lines; largest:")
    for n, p in sizes[: FLAGS.top]:
        print(f"  {n:5d}  {p}")
    broken = [f"module {p}: {n} lines > {FLAGS.max_module}" for n, p in sizes if n > FLAGS.max_module]
    for p in library + sorted((ROOT / "experiments").glob("*.py")):
        for name, n in long_defs(p, FLAGS.max_def):
            broken.append(f"{p.relative_to(ROOT)}:{name}: {n} lines > {FLAGS.max_def}")
    longest = max((lines(p), p.relative_to(ROOT)) for p in binaries)
    print(f"binaries: {len(binaries)}, longest {longest[1]} ({longest[0]} lines)")
    broken += [
        f"binary {p.relative_to(ROOT)}: {lines(p)} lines > {FLAGS.max_binary}"
        for p in binaries
        if lines(p) > FLAGS.max_binary
    ]
    for b in broken:
        print("over the limit:", b)
    print("all limits met" if not broken else f"{len(broken)} over the limits")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    app.run(main)
