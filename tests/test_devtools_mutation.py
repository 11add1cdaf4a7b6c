"""``make mutation``'s runner (devtools/mutation.py): its module list, scores and report.

Running mutmut itself takes minutes, so these tests check what the runner decides around
it: which modules and tests it names, the configuration it hands mutmut, how it counts and
how it merges a partial run into docs/mutation.json.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from devtools import mutation
from devtools.mutation import ModuleScore, MutationRunError, Target


def test_every_target_names_a_module_and_tests_that_exist() -> None:
    for target in mutation.TARGETS:
        assert (mutation.ROOT / target.module).is_file(), target.module
        for test in target.tests:
            assert (mutation.ROOT / test.split("::")[0]).is_file(), test
    modules = [t.module for t in mutation.TARGETS]
    assert len(set(modules)) == len(modules)


def test_the_engine_and_the_aggregate_must_reach_ninety_percent() -> None:
    minimum = {t.module: t.minimum for t in mutation.TARGETS}
    assert minimum["sagas/engine.py"] == 90.0
    assert minimum["orders/domain.py"] == 90.0
    assert minimum["eventstore/aggregates.py"] == 90.0
    assert all(m >= 80.0 for m in minimum.values())


def test_the_event_store_core_is_under_mutation_testing() -> None:
    modules = {t.module for t in mutation.TARGETS}
    assert {
        "eventstore/aggregates.py",
        "eventstore/registry.py",
        "eventstore/serialization.py",
        "eventstore/repository.py",
        "eventstore/memory.py",
    } <= modules


def test_a_score_counts_timeouts_as_detected() -> None:
    score = ModuleScore(module="m.py", killed=8, survived=1, timeout=1)
    assert score.score == 90.0
    assert score.as_json() == {
        "module": "m.py",
        "killed": 8,
        "survived": 1,
        "timeout": 1,
        "score": 90.0,
    }
    assert ModuleScore(module="m.py", killed=0, survived=0, timeout=0).score == 100.0


def test_the_aggregate_score_weighs_modules_by_their_mutants() -> None:
    scores = [
        ModuleScore(module="a.py", killed=90, survived=10, timeout=0),
        ModuleScore(module="b.py", killed=0, survived=0, timeout=0),
        ModuleScore(module="c.py", killed=1, survived=9, timeout=0),
    ]
    assert mutation.aggregate_score(scores) == pytest.approx(100 * 91 / 110)


def test_a_partial_run_keeps_the_other_modules_entries_in_target_order() -> None:
    engine, domain = mutation.TARGETS[0].module, "orders/domain.py"
    previous = [
        {"module": domain, "killed": 1, "survived": 0, "timeout": 0, "score": 100.0},
        {"module": "gone.py", "killed": 1, "survived": 0, "timeout": 0, "score": 100.0},
        {"module": engine, "killed": 1, "survived": 1, "timeout": 0, "score": 50.0},
    ]

    merged = mutation.merge_report(previous, [ModuleScore(engine, 3, 1, 0)])

    assert [entry["module"] for entry in merged] == [engine, domain]
    assert merged[0] == ModuleScore(engine, 3, 1, 0).as_json()


def test_only_listed_modules_can_be_selected() -> None:
    assert mutation.select([]) == list(mutation.TARGETS)
    assert mutation.select(["orders/domain.py"]) == [
        t for t in mutation.TARGETS if t.module == "orders/domain.py"
    ]
    with pytest.raises(MutationRunError, match=r"not a mutation target: orders/api\.py"):
        mutation.select(["orders/api.py"])


def test_mutmut_mutates_one_module_against_its_fast_tests_only(tmp_path: Path) -> None:
    for package in ("sagas", "orders", "tests"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "conftest.py").write_text("")
    target = Target("sagas/engine.py", ("sagas/tests/test_engine.py",), minimum=90.0)

    config = tomllib.loads(mutation.mutmut_config(target, tmp_path))["tool"]["mutmut"]

    assert config["source_paths"] == ["orders", "sagas"]
    assert config["only_mutate"] == ["sagas/engine.py"]
    assert config["also_copy"] == ["conftest.py"]
    assert config["pytest_add_cli_args_test_selection"] == ["sagas/tests/test_engine.py"]
    # Database tests in a listed file never run: the selection stays fast.
    assert config["pytest_add_cli_args"][-2:] == ["-m", "not django_db"]


def test_a_target_with_a_missing_file_is_refused_before_anything_runs() -> None:
    target = Target("sagas/engine.py", ("sagas/tests/test_nothing_here.py",), minimum=90.0)
    with pytest.raises(MutationRunError, match=r"no such file: sagas/tests/test_nothing_here\.py"):
        mutation.prepare(target)


def test_a_database_target_reuses_its_test_database_across_mutants(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "__init__.py").write_text("")
    target = Target("orders/invariants.py", ("tests/faults/test_invariants.py",), 80.0, True)

    config = tomllib.loads(mutation.mutmut_config(target, tmp_path))["tool"]["mutmut"]

    args = config["pytest_add_cli_args"]
    assert "--reuse-db" in args
    # The hook that closes the session's connections before mutmut forks is loaded.
    assert args[args.index("devtools.mutation") - 1] == "-p"
    assert hasattr(mutation, "pytest_sessionfinish")
    # Database tests run; those that start a worker, the lab or a browser never do.
    assert args[-2:] == ["-m", "not worker and not slow and not browser"]


def test_the_database_targets_are_the_rules_and_the_postgresql_store() -> None:
    needing = {t.module for t in mutation.TARGETS if t.database}
    assert needing == {"orders/invariants.py", "sagas/invariants.py", "eventstore/postgres.py"}


def test_a_database_target_without_server_urls_is_refused_naming_what_to_set() -> None:
    targets = mutation.select(["sagas/engine.py", "orders/invariants.py"])
    with pytest.raises(MutationRunError, match=r"orders/invariants\.py.*set DATABASE_URL and"):
        mutation.check_servers(targets, {"REDIS_URL": "", "PATH": "/bin"})
    with pytest.raises(MutationRunError, match=r"set REDIS_URL as for make test"):
        mutation.check_servers(targets, {"DATABASE_URL": "postgres://h/db"})
    mutation.check_servers(targets, {"DATABASE_URL": "postgres://h/db", "REDIS_URL": "redis://h"})
    # The other targets need neither.
    mutation.check_servers(mutation.select(["sagas/engine.py"]), {})


def test_each_database_target_has_a_test_database_of_its_own() -> None:
    url = "postgres://postgres@127.0.0.1:5432/bo_main"
    rules, store = mutation.select(["orders/invariants.py", "eventstore/postgres.py"])
    assert mutation.mutation_test_database(url, rules) == "test_bo_main_mutation_orders_invariants"
    assert mutation.mutation_test_database(url, store) == (
        "test_bo_main_mutation_eventstore_postgres"
    )
    with pytest.raises(MutationRunError, match="too long"):
        mutation.mutation_test_database(f"postgres://h/{'x' * 40}", rules)
