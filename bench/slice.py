"""Run one benchmark once, at a given size, and write its records as JSON: one compare slice.

``python -m bench.slice NAME OUT [SIZES]`` recreates the bench database, sets the benchmark
module's size constants from SIZES (a Python dict literal such as ``{"ROUNDS": 1}``), runs
its ``run()`` and writes the records to OUT as a JSON list. bench/results.json is not touched.

``bench.compare`` runs this file's source with ``python -c`` in each revision's checkout,
including revisions older than this file, so it may use only what every revision's bench
package has: ``bench.database.use_bench_database`` and each benchmark module's ``run()``
and module-level size constants. Keep it that way.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import signal
import sys
from pathlib import Path


def module_name(name: str) -> str:
    """Return the module of benchmark ``name`` as this revision's ``bench/__main__.py`` maps it."""
    try:
        from bench.__main__ import MODULES
    except ImportError:
        return f"bench.{name}"
    return dict(MODULES).get(name, f"bench.{name}")


def run_slice(name: str, out: Path, sizes: dict[str, object]) -> None:
    """Run benchmark ``name`` once on a fresh bench database with ``sizes``; write its records."""
    from bench.database import use_bench_database

    use_bench_database()
    # Imported after Django is set up: some benchmark modules import models at the top.
    module = importlib.import_module(module_name(name))
    missing = sorted(attr for attr in sizes if not hasattr(module, attr))
    if missing:
        # Both revisions must run the same workload; a size this one lacks would not apply.
        raise SystemExit(f"{module.__name__} has no {', '.join(missing)} at this revision")
    for attr, value in sizes.items():
        setattr(module, attr, value)
    records = module.run()
    out.write_text(json.dumps([dataclasses.asdict(r) for r in records], indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Parse ``NAME OUT [SIZES]`` and run the slice."""
    # bench.compare stops a slice with SIGINT, so that the benchmark stops what it started;
    # a shell starts background commands with SIGINT ignored, which Python would keep.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        raise SystemExit("usage: python -m bench.slice NAME OUT [SIZES]")
    sizes = ast.literal_eval(args[2]) if len(args) == 3 else {}
    if not isinstance(sizes, dict):
        raise SystemExit(f"SIZES must be a dict literal, not {args[2]!r}")
    run_slice(args[0], Path(args[1]), sizes)


if __name__ == "__main__":
    main()
