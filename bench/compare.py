"""Benchmark two revisions side by side, taking turns: ``make bench-compare REV=<commit>``.

``python -m bench.compare REV [names…]`` checks out the working tree's HEAD and REV as git
worktrees under ``.local/bench-compare/`` (the same virtualenv runs both, so no package may
be pinned at two versions unless ``--force``), gives each its own bench database, and runs
every benchmark in slices: each slice is one run of the benchmark at a reduced size
(``SIZES``) in one revision's checkout (bench/slice.py), and the revisions take turns in
ABBA order (HEAD, REV, REV, HEAD, HEAD, REV, …), so that the machine's drift during the run
slows both alike. Each figure is then the median over its slices, per revision.

It prints, and writes as JSON and as a markdown table, every record both revisions
produced: the two values, HEAD ÷ REV, the change in the record's "better" direction, each
revision's ratio against its own same-run baseline, and whether each meets the target.
Nothing here imports Django: the benchmarks run only in the checkouts' processes.
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from psycopg import sql

from bench.__main__ import BENCHMARKS, MODULES
from bench.database import bench_database_name

ROOT = Path(__file__).resolve().parent.parent
CHECKOUTS = ROOT / ".local" / "bench-compare"
SLICE_SOURCE = Path(__file__).resolve().with_name("slice.py")
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt")
DEFAULT_SLICES = 3
# A change beyond this share, for the worse, is flagged (the issue asks for its cause).
DROP_FLAG = 0.10
# Generous, so that a hung benchmark fails the comparison instead of holding it forever.
SLICE_TIMEOUT = 3600.0
STOP_GRACE_SECONDS = 30.0

# Per-slice sizes: module constants of each benchmark, set before its run(). With the
# default 3 slices per revision each revision does about the work of one ``make bench``.
SIZES: dict[str, dict[str, object]] = {
    "eventstore": {"SLICES": 4, "LAG_SECONDS": 1.0, "LOAD_REPEATS": {100: 67, 1000: 17, 10_000: 5}},
    "saga_throughput": {"ROUNDS": 2, "LATENCY_SAMPLES": 50},
    "api": {"SLICES": 2, "FIXED_RATE_ROUNDS": 1, "E2E_ROUNDS": 1},
    "admin_pages": {"REPEATS": 3},
}
# Tiny sizes that only show the machinery works (``--smoke``); their figures mean little.
SMOKE_SIZES: dict[str, dict[str, object]] = {
    "eventstore": {
        "SLICES": 1,
        "SLICE_SECONDS": 0.2,
        "LAG_SECONDS": 0.5,
        "POOL_BATCH": 2000,
        "POOL_MINIMUM": 500,
        "LOAD_REPEATS": {100: 5, 1000: 3, 10_000: 3},
        "CATCH_UP_BATCHES": 4,
    },
    "saga_throughput": {"WARMUP": 5, "BATCH": 20, "ROUNDS": 1, "LATENCY_SAMPLES": 5},
    "api": {
        "CONCURRENCY": (1, 4),
        "SLICE_SECONDS": 1.0,
        "SLICES": 2,
        "FIXED_RATE_SECONDS": 2.0,
        "FIXED_RATE_ROUNDS": 1,
        "E2E_BATCH": 20,
        "E2E_ROUNDS": 1,
    },
    "admin_pages": {"LARGE_ORDERS": 1000, "LARGE_EVENTS": 10_000, "WARMUP": 1, "REPEATS": 2},
}


class CompareError(Exception):
    """The comparison cannot run or went wrong; the message says why."""


@dataclass(frozen=True)
class Side:
    """One revision under comparison: its commit, checkout and bench database."""

    role: str  # "head" or "rev"
    label: str  # as the user named it
    commit: str
    subject: str
    checkout: Path
    database: str

    @property
    def short(self) -> str:
        return self.commit[:10]


# --- git ----------------------------------------------------------------------------------


def _git(*args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(["git", *args], check=False, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise CompareError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def _commit(rev: str) -> str:
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except CompareError as exc:
        raise CompareError(f"{rev!r} names no commit here") from exc


def _file_at(commit: str, path: str) -> str | None:
    result = subprocess.run(
        ["git", "show", f"{commit}:{path}"], check=False, cwd=ROOT, capture_output=True, text=True
    )
    return result.stdout if result.returncode == 0 else None


def pins(text: str) -> dict[str, str]:
    """Return ``{package: version}`` for every ``name==version`` line of a requirements file."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, _, version = line.partition("==")
            package = name.split("[", 1)[0].strip().lower().replace("_", "-")
            found[package] = version.split(";", 1)[0].strip()
    return found


def requirement_differences(a: str, b: str) -> tuple[list[str], list[str]]:
    """Compare the pins of commits ``a`` and ``b``: (packages pinned differently, pinned by one).

    One virtualenv runs both revisions: a package at two versions cannot be, while a package
    only one revision pins is harmless when the virtualenv has it (its slices fail if not).
    """
    pinned: list[dict[str, str]] = [{}, {}]
    for side, commit in zip(pinned, (a, b), strict=True):
        for path in REQUIREMENT_FILES:
            side.update(pins(_file_at(commit, path) or ""))
    differ = sorted(
        f"{p} {pinned[0][p]} / {pinned[1][p]}"
        for p in pinned[0].keys() & pinned[1].keys()
        if pinned[0][p] != pinned[1][p]
    )
    one_side = sorted(pinned[0].keys() ^ pinned[1].keys())
    return differ, one_side


def _checkout(commit: str) -> Path:
    """Return a clean detached worktree of ``commit`` under .local/bench-compare/."""
    path = CHECKOUTS / commit[:12]
    if (path / ".git").exists():
        if _git("rev-parse", "HEAD", cwd=path) == commit and not _git(
            "status", "--porcelain", "--untracked-files=no", cwd=path
        ):
            return path
        _git("worktree", "remove", "--force", str(path))
    elif path.exists():
        shutil.rmtree(path)
    CHECKOUTS.mkdir(parents=True, exist_ok=True)
    _git("worktree", "add", "--detach", "--quiet", str(path), commit)
    return path


def _has_benchmark(side: Side, name: str) -> bool:
    module = MODULES.get(name, f"bench.{name}")
    return (side.checkout / f"{module.replace('.', '/')}.py").exists()


def _remove_other_checkouts(keep: set[str]) -> None:
    """Remove the checkouts of earlier comparisons, except those of commits in ``keep``."""
    if not CHECKOUTS.exists():
        return
    for path in CHECKOUTS.iterdir():
        if (path / ".git").exists() and not any(c.startswith(path.name) for c in keep):
            _git("worktree", "remove", "--force", str(path))


def _side(role: str, label: str, database: str) -> Side:
    commit = _commit(label)
    subject = _git("log", "-1", "--format=%s", commit)
    return Side(role, label, commit, subject, _checkout(commit), database)


# --- running slices -----------------------------------------------------------------------


def slice_order(slices: int) -> list[tuple[int, int]]:
    """Return (slice index, side index) pairs in ABBA order: each pair's first side alternates."""
    order: list[tuple[int, int]] = []
    for index in range(slices):
        pair = (0, 1) if index % 2 == 0 else (1, 0)
        order.extend((index, side) for side in pair)
    return order


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Interrupt a slice and give its benchmark time to stop the servers and workers it began.

    Those run in sessions of their own: killing the slice outright would leave them running.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _run_slice(
    side: Side, name: str, sizes: dict[str, object], index: int, run_dir: Path
) -> list[dict[str, Any]]:
    stem = f"{name}-{index + 1}-{side.role}"
    out, log = run_dir / f"{stem}.json", run_dir / f"{stem}.log"
    # Each revision its own database and cache keys (on the one Redis): nothing one writes
    # is read by the other.
    prefix = f"{os.environ.get('CACHE_KEY_PREFIX', 'backoffice')}-compare-{side.role}"
    env = dict(os.environ, BENCH_DATABASE_NAME=side.database, CACHE_KEY_PREFIX=prefix)
    # The checkout's own modules come first (``-c`` puts its working directory on the path).
    env.pop("PYTHONPATH", None)
    command = [sys.executable, "-c", SLICE_SOURCE.read_text(), name, str(out), repr(sizes)]
    with log.open("w") as stream:
        # A session of its own: a Ctrl-C reaches the slice once, through _stop, not twice.
        process = subprocess.Popen(
            command,
            cwd=side.checkout,
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=SLICE_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            _stop(process)
            raise CompareError(f"{stem} ran over {SLICE_TIMEOUT:.0f} s; see {log}") from exc
        except KeyboardInterrupt:
            _stop(process)
            raise
    if returncode != 0 or not out.exists():
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise CompareError(f"{stem} failed (exit {returncode}); see {log}:\n{tail}")
    records: list[dict[str, Any]] = json.loads(out.read_text())
    return records


# --- summarising --------------------------------------------------------------------------


def higher_is_better(unit: str) -> bool:
    """Tell whether more is better for a figure in ``unit``: rates (x/s) yes, times (ms) no."""
    return "/" in unit


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Reduce one revision's slices of one record to medians, keeping each slice's value."""
    last = records[-1]
    ratio = statistics.median(r["ratio"] for r in records)
    target = last["target"]
    return {
        "value": round(statistics.median(r["value"] for r in records), 3),
        "baseline": last["baseline"],
        "baseline_value": round(statistics.median(r["baseline_value"] for r in records), 3),
        "ratio": round(ratio, 3),
        "target": target,
        "meets_target": None if target is None else ratio >= target,
        "slices": [r["value"] for r in records],
        "slice_ratios": [r["ratio"] for r in records],
    }


def compare_records(
    head: list[list[dict[str, Any]]], rev: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Pair the two revisions' slices record by record, in the order the records came."""
    by_side: list[dict[str, list[dict[str, Any]]]] = [{}, {}]
    for side, slices in zip(by_side, (head, rev), strict=True):
        for records in slices:
            for record in records:
                side.setdefault(record["name"], []).append(record)
    names = list(dict.fromkeys([*by_side[0], *by_side[1]]))
    figures = []
    for name in names:
        h, r = by_side[0].get(name), by_side[1].get(name)
        unit = (h or r or [{}])[-1].get("unit", "")
        figure: dict[str, Any] = {
            "name": name,
            "unit": unit,
            "higher_is_better": higher_is_better(unit),
            "head": summarise(h) if h else None,
            "rev": summarise(r) if r else None,
            "head_over_rev": None,
            "change": None,
            "head_better_pairs": None,
        }
        if h and r and figure["rev"]["value"] and figure["head"]["value"]:
            over = figure["head"]["value"] / figure["rev"]["value"]
            figure["head_over_rev"] = round(over, 3)
            # Positive: HEAD is better, in the figure's own sense (faster, or more per second).
            figure["change"] = round(over - 1 if figure["higher_is_better"] else 1 / over - 1, 3)
        if h and r and len(h) == len(r):
            # Slice i of each ran back to back: how often HEAD won says more than one median
            # when the machine is noisy.
            sign = 1 if figure["higher_is_better"] else -1
            wins = sum(sign * (a["value"] - b["value"]) > 0 for a, b in zip(h, r, strict=True))
            figure["head_better_pairs"] = [wins, len(h)]
        figures.append(figure)
    return figures


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _change(change: float | None) -> str:
    if change is None:
        return "-"
    text = f"{change:+.1%}"
    return f"{text} **worse**" if change < -DROP_FLAG else text


def _pairs(figure: dict[str, Any]) -> str:
    pairs = figure["head_better_pairs"]
    return "-" if pairs is None else f"{pairs[0]}/{pairs[1]}"


def _met(summary: dict[str, Any] | None) -> str:
    if summary is None or summary["meets_target"] is None:
        return "-"
    return "met" if summary["meets_target"] else "**missed**"


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def markdown(result: dict[str, Any]) -> str:
    """Render the comparison as a markdown table with a line saying what ran, and how."""
    head, rev = result["head"], result["rev"]
    lines = [
        f"`make bench-compare REV={rev['label']}` at {result['started_at']}, "
        f"{max(1, round(result['minutes']))} min, {result['slices']} slices per revision and "
        f"benchmark taking turns "
        f"(ABBA), load average {result['load_average'][0]:.1f}-{result['load_average'][1]:.1f}. "
        f"HEAD is `{head['commit'][:10]}` ({_cut(head['subject'])}); REV is "
        f"`{rev['commit'][:10]}` ({_cut(rev['subject'])}). Each value is the median of the "
        "slices; change is HEAD against REV, positive when HEAD is better; HEAD won: in how "
        "many pairs of slices run back to back HEAD's value was the better; ratio: against the "
        "baseline measured in the same slice.",
        "",
        "| record | HEAD | REV | HEAD ÷ REV | change | HEAD won | ratio HEAD | ratio REV "
        "| target | HEAD | REV |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for f in result["figures"]:
        h, r = f["head"], f["rev"]
        target = (h or r)["target"]
        lines.append(
            f"| {f['name']} | {_number(h and h['value'])} {f['unit']} "
            f"| {_number(r and r['value'])} {f['unit']} | {_number(f['head_over_rev'])} "
            f"| {_change(f['change'])} | {_pairs(f)} | {_number(h and h['ratio'])} "
            f"| {_number(r and r['ratio'])} | {'-' if target is None else f'{target:.2f}'} "
            f"| {_met(h)} | {_met(r)} |"
        )
    return "\n".join(lines) + "\n"


def print_table(figures: list[dict[str, Any]]) -> None:
    """Print the comparison as a fixed-width table."""
    width = max([len("record"), *(len(f["name"]) for f in figures)])
    header = (
        f"{'record':<{width}} {'HEAD':>10} {'REV':>10} {'H÷R':>6} {'change':>8} {'H won':>5} "
        f"{'ratio H':>7} {'ratio R':>7} {'target':>6}  met H/R"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        h, r = f["head"], f["rev"]
        target = (h or r)["target"]
        change = "-" if f["change"] is None else f"{f['change']:+.1%}"
        flag = " <" if f["change"] is not None and f["change"] < -DROP_FLAG else ""
        met = "/".join(
            {None: "-", True: "yes", False: "NO"}[s["meets_target"] if s else None] for s in (h, r)
        )
        print(
            f"{f['name']:<{width}} {_number(h and h['value']):>10} {_number(r and r['value']):>10} "
            f"{_number(f['head_over_rev']):>6} {change:>8} {_pairs(f):>5} "
            f"{_number(h and h['ratio']):>7} "
            f"{_number(r and r['ratio']):>7} {'-' if target is None else f'{target:.2f}':>6}  "
            f"{met}{flag}"
        )


# --- the run ------------------------------------------------------------------------------


def _sizes(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    sizes = {name: dict(values) for name, values in (SMOKE_SIZES if args.smoke else SIZES).items()}
    for setting in args.set:
        target, _, literal = setting.partition("=")
        name, _, attr = target.partition(".")
        if not attr or not literal or name not in BENCHMARKS:
            raise CompareError(f"--set {setting!r}: expected NAME.ATTR=VALUE, NAME in {BENCHMARKS}")
        try:
            sizes.setdefault(name, {})[attr] = ast.literal_eval(literal)
        except (ValueError, SyntaxError) as exc:
            raise CompareError(f"--set {setting!r}: {literal!r} is not a Python literal") from exc
    return sizes


def _drop_databases(names: list[str]) -> None:
    url = os.environ.get("DATABASE_URL", "")
    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _check_requirements(args: argparse.Namespace, head: str, rev: str) -> None:
    differ, one_side = requirement_differences(head, rev)
    if differ and not args.force:
        raise CompareError(
            f"{args.head} and {args.rev} pin different versions ({'; '.join(differ)}): one "
            "virtualenv cannot run both as pinned. --force (COMPARE_ARGS=--force) compares "
            "them anyway."
        )
    if differ:
        print(f"note (--force): pinned differently: {'; '.join(differ)}; both run this virtualenv")
    if one_side:
        print(f"note: pinned by one revision only: {', '.join(one_side)}")


def _sides(args: argparse.Namespace, head: str, rev: str, base: str) -> tuple[Side, Side]:
    """Check both revisions out (compiled, so no slice pays for its first imports)."""
    _remove_other_checkouts({head, rev})
    sides = (_side("head", args.head, f"{base}_head"), _side("rev", args.rev, f"{base}_rev"))
    for side in sides:
        if not (side.checkout / "bench" / "database.py").exists():
            raise CompareError(f"{side.label} has no bench/database.py: too old to benchmark")
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(side.checkout)],
            check=False,
            stdout=subprocess.DEVNULL,
        )
    return sides


def _benchmarks(args: argparse.Namespace, sides: tuple[Side, Side]) -> list[str]:
    names = [n for n in BENCHMARKS if n in args.names] if args.names else list(BENCHMARKS)
    absent = [n for n in names if not all(_has_benchmark(side, n) for side in sides)]
    if absent:
        print(f"note: not in both revisions, not compared: {', '.join(absent)}")
    return [n for n in names if n not in absent]


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Run the comparison the arguments describe; return its result (what compare.json holds)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise CompareError("No database: set DATABASE_URL (make bench-compare does)")
    sizes = _sizes(args)
    head_commit, rev_commit = _commit(args.head), _commit(args.rev)
    _check_requirements(args, head_commit, rev_commit)
    if _git("status", "--porcelain", "--untracked-files=no"):
        print(f"note: uncommitted changes are not measured; HEAD is {head_commit[:10]}.")
    sides = _sides(args, head_commit, rev_commit, bench_database_name(url))
    names = _benchmarks(args, sides)
    started_at = datetime.now(UTC)
    run_dir = CHECKOUTS / "runs" / started_at.strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True)
    for side in sides:
        print(f"{side.role.upper():<4} {side.short} {side.subject[:70]}  ({side.checkout})")
    print(f"slices: {args.slices} per revision and benchmark; logs in {run_dir}", flush=True)

    started = time.monotonic()
    loads = [os.getloadavg()[0]]
    slices: dict[str, list[list[list[dict[str, Any]]]]] = {}
    try:
        for name in names:
            per_side: list[list[list[dict[str, Any]]]] = [[], []]
            for index, side_index in slice_order(args.slices):
                side = sides[side_index]
                began = time.monotonic()
                records = _run_slice(side, name, sizes.get(name, {}), index, run_dir)
                per_side[side_index].append(records)
                loads.append(os.getloadavg()[0])
                print(
                    f"  {name} {index + 1}/{args.slices} {side.role.upper():<4} "
                    f"{time.monotonic() - began:5.0f} s  {len(records)} records  "
                    f"load {loads[-1]:.1f}",
                    flush=True,
                )
            slices[name] = per_side
    finally:
        if not args.keep_databases:
            _drop_databases([side.database for side in sides])

    figures = compare_records(
        [s for name in names for s in slices[name][0]],
        [s for name in names for s in slices[name][1]],
    )
    return {
        "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "load_average": [round(min(loads), 2), round(max(loads), 2)],
        "slices": args.slices,
        "benchmarks": names,
        "sizes": {name: {k: repr(v) for k, v in sizes.get(name, {}).items()} for name in names},
        "head": {"label": args.head, "commit": sides[0].commit, "subject": sides[0].subject},
        "rev": {"label": args.rev, "commit": sides[1].commit, "subject": sides[1].subject},
        "figures": figures,
    }


@contextmanager
def _exclusive() -> Iterator[None]:
    """Hold the comparisons' lock: two at once would slow each other and share checkouts."""
    CHECKOUTS.mkdir(parents=True, exist_ok=True)
    with (CHECKOUTS / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CompareError(f"another bench-compare is running in {ROOT}") from exc
        yield


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, compare, print the table and write the JSON and markdown files."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("rev", help="the revision to compare HEAD with (any git revision)")
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS))
    parser.add_argument("--head", default="HEAD", help="the other revision (default: HEAD)")
    parser.add_argument("--slices", type=int, default=DEFAULT_SLICES, help="per revision")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the machinery")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.ATTR=VALUE",
        help="a per-slice size, e.g. api.SLICES=4 (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="even if requirements differ")
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "compare.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "bench" / "compare.md")
    # Intermixed: make passes ``REV $(COMPARE_ARGS)``, whose options may come before names.
    args = parser.parse_intermixed_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    if args.slices < 1:
        parser.error("--slices must be at least 1")
    # SIGTERM (make's, with_servers') stops a slice as Ctrl-C does: gently.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _exclusive():
            result = compare(args)
    except CompareError as exc:
        print(f"bench-compare: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench-compare: interrupted", file=sys.stderr)
        return 130
    print()
    print_table(result["figures"])
    print(f"\n<: HEAD more than {DROP_FLAG:.0%} worse than REV on that figure.")
    missed = [
        f["name"] for f in result["figures"] if (f["head"] or {}).get("meets_target") is False
    ]
    if missed:
        print(f"HEAD MISSES {len(missed)} TARGETS: {'; '.join(missed)}")
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.markdown.write_text(markdown(result))
    print(f"\nwritten: {args.json}, {args.markdown} (the table for docs/performance.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
