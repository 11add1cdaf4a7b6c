"""Write benchmark figures to ``bench/results.json`` and print them side by side.

Every record compares one figure of ours with a baseline measured in the same run, as a ratio
that always reads "higher is better": our throughput ÷ the baseline's, or the baseline's time
÷ ours. ``target`` is the ratio an issue asks for, or None where it sets none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_FILE = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True)
class Record:
    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float
    target: float | None

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


def throughput_record(
    *,
    name: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    target: float | None,
) -> Record:
    """Build a record where more is better (events/s, orders/s): ratio = ours ÷ baseline."""
    ratio = value / baseline_value if baseline_value else 0.0
    return Record(
        name, round(value, 3), unit, baseline, round(baseline_value, 3), round(ratio, 3), target
    )


def latency_record(
    *,
    name: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    target: float | None,
) -> Record:
    """Build a record where less is better (ms): ratio = baseline ÷ ours."""
    ratio = baseline_value / value if value else 0.0
    return Record(
        name, round(value, 3), unit, baseline, round(baseline_value, 3), round(ratio, 3), target
    )


def abba(sides: tuple[str, str], index: int) -> tuple[str, str]:
    """Which side goes first in turn ``index``: A B, B A, B A, A B, and again.

    Each side goes first as often as second, and a drift over the run (the machine warming
    up, another process waking) falls on both alike.
    """
    first, second = sides
    return (first, second) if index % 4 in (0, 3) else (second, first)


def best_level_record(
    *,
    name: str,
    per_level: Mapping[str, Mapping[int, float]],
    sides: tuple[str, str],
    baseline: str,
    target: float | None,
) -> Record:
    """Build a throughput record (/s) of two sides each measured at several concurrency levels.

    ``per_level[side][connections]`` is a side's throughput at a level, ``sides`` ours and
    then the baseline's. Each side's best level counts (the two may peak at different
    levels), and ``baseline``'s description is followed by every level's pair, so a record
    shows how close the sides ran everywhere, not at the best level alone.
    """
    ours, theirs = sides
    levels = list(per_level[ours])
    pairs = ", ".join(
        f"c={c}: {per_level[ours][c]:.0f} vs {per_level[theirs][c]:.0f}" for c in levels
    )
    return throughput_record(
        name=name,
        value=max(per_level[ours].values()),
        unit="/s",
        baseline=f"{baseline} (best of {', '.join(map(str, levels))} connections; {pairs})",
        baseline_value=max(per_level[theirs].values()),
        target=target,
    )


def save(records: list[Record]) -> None:
    """Merge records into results.json (replacing same-named ones) and print a table."""
    existing: list[dict[str, object]] = []
    if RESULTS_FILE.exists():
        existing = json.loads(RESULTS_FILE.read_text())
    names = {r.name for r in records}
    merged = [r for r in existing if r.get("name") not in names]
    merged.extend(asdict(r) for r in records)
    tmp = RESULTS_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    os.replace(tmp, RESULTS_FILE)
    print_table(records)


def print_table(records: list[Record]) -> None:
    header = f"{'benchmark':<46} {'ours':>12} {'baseline':>12} {'ratio':>7} {'target':>7}  ok"
    print(header)
    print("-" * len(header))
    for r in records:
        target = "-" if r.target is None else f"{r.target:.2f}"
        ok = {None: "", True: "yes", False: "NO"}[r.meets_target]
        print(
            f"{r.name:<46} {r.value:>9.2f} {r.unit:<2} {r.baseline_value:>9.2f}    "
            f"{r.ratio:>7.3f} {target:>7}  {ok}"
        )
