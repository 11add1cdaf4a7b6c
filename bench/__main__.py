"""Run the benchmarks: ``python -m bench [names…]`` (``make bench`` runs them all).

Each benchmark is a module ``bench/<name>.py`` with ``run() -> list[Record]``. They run in
the order of ``BENCHMARKS`` on one fresh bench database (bench/database.py); their records are
merged into bench/results.json and printed as one table. A missed target is reported, not
an error: the exit status is non-zero only when a benchmark fails to run.
``python -m bench.compare REV`` (``make bench-compare``) runs them for HEAD and REV in turns.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable

from bench.records import Record, save

# The order they run in. A module another issue has yet to add is reported as not present.
# observability after admin_pages: it places thousands of orders, which would leave the
# admin pages (and the /metrics scrape) more than their 10,000 orders.
BENCHMARKS = (
    "eventstore",
    "saga_throughput",
    "saga_scaling",
    "api",
    "admin_pages",
    "observability",
    "webhooks",
    "personal_data",
)
# Modules whose name differs from the benchmark's.
MODULES = {"eventstore": "bench.eventstore_bench"}


def _runner(name: str) -> Callable[[], list[Record]] | None:
    """Import the benchmark's module and return its ``run``; None when it does not exist."""
    module_name = MODULES.get(name, f"bench.{name}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    run: Callable[[], list[Record]] = module.run
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    names = [n for n in BENCHMARKS if n in args.names] if args.names else list(BENCHMARKS)

    from bench.database import use_bench_database

    url = use_bench_database()
    print(f"bench database: {url.rsplit('/', 1)[-1]} (recreated and migrated)", flush=True)

    records: list[Record] = []
    outcome: dict[str, str] = {}
    for name in names:
        print(f"\n== {name}", flush=True)
        started = time.perf_counter()
        try:
            run = _runner(name)
            if run is None:
                outcome[name] = "not present"
                print(f"  {name}: not present (no bench module yet)")
                continue
            produced = run()
        except Exception:
            traceback.print_exc()
            outcome[name] = "FAILED"
            continue
        records.extend(produced)
        outcome[name] = f"{len(produced)} records in {time.perf_counter() - started:.0f} s"

    print()
    if records:
        save(records)
    print()
    for name, result in outcome.items():
        print(f"{name}: {result}")
    missed = [r for r in records if r.meets_target is False]
    if missed:
        print(f"\nMISSED TARGETS ({len(missed)}):")
        for r in missed:
            print(f"  {r.name}: ratio {r.ratio:.3f} < target {r.target:.2f} (vs {r.baseline})")
    elif records:
        print("\nEvery target met.")
    return 1 if "FAILED" in outcome.values() else 0


if __name__ == "__main__":
    sys.exit(main())
