"""bench/compare.py: the order slices run in, how figures pair up, and what gets written; the
on/off benchmarks' turns (bench/records.py)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import compare
from bench.records import abba
from bench.slice import module_name


def _record(name: str, value: float, *, unit: str, ratio: float, target: float | None) -> Any:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": "the baseline",
        "baseline_value": 1.0,
        "ratio": ratio,
        "target": target,
    }


def test_the_revisions_take_turns_going_first() -> None:
    assert compare.slice_order(3) == [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1)]


def test_the_on_off_benchmarks_sides_go_first_as_often_as_second() -> None:
    turns = [abba(("on", "off"), i) for i in range(8)]
    assert turns[:4] == [("on", "off"), ("off", "on"), ("off", "on"), ("on", "off")]
    assert turns[4:] == turns[:4]


def test_a_figure_is_the_median_of_its_slices_and_the_target_is_judged_on_the_median_ratio() -> (
    None
):
    slices = [
        [_record("rate", v, unit="/s", ratio=q, target=0.5)]
        for v, q in ((10.0, 0.4), (30.0, 0.6), (20.0, 0.55))
    ]
    summary = compare.summarise([s[0] for s in slices])
    assert summary["value"] == 20.0
    assert summary["ratio"] == 0.55
    assert summary["meets_target"] is True
    assert summary["slices"] == [10.0, 30.0, 20.0]


def test_the_change_reads_positive_when_head_is_better_for_rates_and_for_times() -> None:
    head = [[_record("rate", 110.0, unit="/s", ratio=1, target=None)]]
    head[0].append(_record("time", 8.0, unit="ms", ratio=1, target=None))
    rev = [[_record("rate", 100.0, unit="/s", ratio=1, target=None)]]
    rev[0].append(_record("time", 10.0, unit="ms", ratio=1, target=None))
    rate, time = compare.compare_records(head, rev)
    assert (rate["head_over_rev"], rate["change"]) == (1.1, 0.1)
    assert (time["head_over_rev"], time["change"]) == (0.8, 0.25)


def test_head_won_counts_the_pairs_of_slices_where_its_value_was_the_better() -> None:
    def slices(unit: str, values: tuple[float, ...]) -> list[list[dict[str, Any]]]:
        return [[_record("x", v, unit=unit, ratio=1, target=None)] for v in values]

    (rate,) = compare.compare_records(slices("/s", (5, 9, 7)), slices("/s", (6, 8, 6)))
    (time,) = compare.compare_records(slices("ms", (5, 9, 7)), slices("ms", (6, 8, 6)))
    assert rate["head_better_pairs"] == [2, 3]
    assert time["head_better_pairs"] == [1, 3]


def test_a_record_only_one_revision_produces_is_listed_without_a_comparison() -> None:
    head = [[_record("new", 1.0, unit="ms", ratio=1, target=None)]]
    rev = [[_record("old", 1.0, unit="ms", ratio=1, target=None)]]
    figures = compare.compare_records(head, rev)
    assert [(f["name"], f["head"] is None, f["rev"] is None) for f in figures] == [
        ("new", False, True),
        ("old", True, False),
    ]
    assert all(f["change"] is None for f in figures)


def test_the_markdown_flags_a_drop_beyond_ten_percent_and_a_missed_target() -> None:
    head = [[_record("saga: throughput", 80.0, unit="/s", ratio=0.45, target=0.5)]]
    rev = [[_record("saga: throughput", 100.0, unit="/s", ratio=0.6, target=0.5)]]
    result = {
        "started_at": "2026-12-06 15:00 UTC",
        "minutes": 21.0,
        "load_average": [0.5, 2.0],
        "slices": 1,
        "head": {"label": "HEAD", "commit": "a" * 40, "subject": "ours"},
        "rev": {"label": "main", "commit": "b" * 40, "subject": "theirs"},
        "figures": compare.compare_records(head, rev),
    }
    table = compare.markdown(result)
    assert "`make bench-compare REV=main`" in table
    assert (
        "| saga: throughput | 80.0 /s | 100.0 /s | 0.8 | -20.0% **worse** | 0/1 | 0.45 | 0.6 "
        "| 0.50 | **missed** | met |"
    ) in table


def test_set_overrides_a_size_with_a_python_literal_and_refuses_an_unknown_benchmark() -> None:
    args = argparse.Namespace(smoke=False, set=["api.CONCURRENCY=(1, 4)", "eventstore.SLICES=2"])
    sizes = compare._sizes(args)
    assert sizes["api"]["CONCURRENCY"] == (1, 4)
    assert sizes["eventstore"]["SLICES"] == 2
    assert compare.SIZES["eventstore"]["SLICES"] != 2  # the defaults stay as they are
    with pytest.raises(compare.CompareError):
        compare._sizes(argparse.Namespace(smoke=False, set=["nope.SLICES=2"]))


def test_every_size_names_a_constant_its_benchmark_module_has() -> None:
    # A name a module lacks stops the slice (bench/slice.py): catch a rename here instead.
    import importlib

    for table in (compare.SIZES, compare.SMOKE_SIZES):
        for name, sizes in table.items():
            module = importlib.import_module(module_name(name))
            assert [attr for attr in sizes if not hasattr(module, attr)] == [], name


def test_requirements_of_one_commit_do_not_differ_from_themselves() -> None:
    head = compare._commit("HEAD")
    assert compare.requirement_differences(head, head) == ([], [])


def test_pins_reads_name_and_version_whatever_the_extras_markers_and_comments() -> None:
    text = (
        "# runtime\n-r requirements.txt\ncelery[redis]==5.7.0  # why\n"
        "Django_Stubs==5.2.9 ; python_version >= '3.11'\nunpinned>=1\n"
    )
    assert compare.pins(text) == {"celery": "5.7.0", "django-stubs": "5.2.9"}
