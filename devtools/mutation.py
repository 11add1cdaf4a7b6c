"""Run mutation testing over the core modules with mutmut: ``python -m devtools.mutation``.

``make mutation`` runs it. Each module in ``TARGETS`` is mutated on its own, in a scratch copy
of the project under ``.local/mutation/<module>/``, against only the fast tests listed beside
it: each mutant reruns the tests that reach the mutated function, in a process forked from
mutmut's. The counts go to ``docs/mutation.json``, one entry per module:

    [{"module": "sagas/engine.py", "killed": 380, "survived": 20, "timeout": 0, "score": 95.0}]

``score`` is the percentage of mutants detected: killed (a test failed) or timed out (a test
ran far past its usual time, as an endless loop does). ``survived`` counts every other mutant
mutmut tried: those no test failed for, and those no selected test reaches at all. The last
line printed is the score over all the modules run, ``mutation score: N%``; the exit code is
1 when a module scores under its ``minimum``.

A surviving mutant either deserves a test that kills it or is equivalent to the original
code (no test could tell them apart); docs/testing.md ("Mutation testing") lists those.
To see a survivor's diff: ``cd .local/mutation/<module> && ../../../.venv/bin/mutmut show
NAME``, or rerun with ``--show``.

Most targets' tests need no server. A target with ``database=True`` (the invariant rules, the
PostgreSQL store) runs its tests on PostgreSQL and Redis: DATABASE_URL and REDIS_URL come from
the caller's environment, as for ``make test``, and the run stops before anything starts when
they are missing. Those tests use a test database of their own,
``test_<name>_mutation_<module>``, so a ``make test`` on the same DATABASE_URL, or another
target's run, can run beside them. It is created once, by mutmut's
first pytest session, and reused (``--reuse-db``) by every mutant's session, which would
otherwise create and migrate it anew; it is dropped before and after the module's run.

Arguments name modules of ``TARGETS`` to run only those (CI may run the engine alone); the
other entries of docs/mutation.json are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".local" / "mutation"
REPORT = ROOT / "docs" / "mutation.json"
#: The machine is shared: one forked test process at a time unless asked otherwise.
DEFAULT_CHILDREN = 1
#: What a database target's tests read from the environment, as ``make test``'s do.
SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL")
#: Tests that start a worker, the lab or a browser are never fast enough to rerun per mutant.
DATABASE_TESTS_MARKERS = "not worker and not slow and not browser"
#: PostgreSQL's longest name, in bytes (NAMEDATALEN - 1).
_POSTGRES_NAME_LIMIT = 63


@dataclass(frozen=True)
class Target:
    """Name a module to mutate, the fast tests that cover it and the score it must reach.

    A test is a file or one test in it (``path::name``, every parametrisation of it).
    """

    module: str
    tests: tuple[str, ...]
    minimum: float
    #: The tests need PostgreSQL and Redis (DATABASE_URL, REDIS_URL from the environment).
    database: bool = False


_EACH_RULE = "tests/invariants/test_each_rule_fires.py"
_PROJECTIONS = "eventstore/tests/test_projections.py"
_READ_SIDE = "orders/tests/test_order_read_side.py"

#: Every module under mutation testing, in one place: add a module here to have it run.
TARGETS: tuple[Target, ...] = (
    Target(
        "sagas/engine.py",
        (
            "sagas/tests/test_engine.py",
            "sagas/tests/test_engine_transitions.py",
            "sagas/tests/test_engine_stop.py",
            "sagas/tests/test_engine_attention.py",
            "sagas/tests/test_definitions.py",
            "orders/tests/test_sagas.py",
        ),
        minimum=90.0,
    ),
    Target(
        "sagas/definitions.py",
        (
            "sagas/tests/test_definitions.py",
            "sagas/tests/test_definition_rules.py",
            "sagas/tests/test_engine.py",
            "sagas/tests/test_engine_transitions.py",
            "sagas/tests/test_engine_attention.py",
        ),
        minimum=90.0,
    ),
    Target(
        "orders/domain.py",
        ("orders/tests/test_domain.py",),
        minimum=90.0,
    ),
    Target(
        "eventstore/aggregates.py",
        ("eventstore/tests/test_aggregates.py", "orders/tests/test_domain.py"),
        minimum=90.0,
    ),
    Target(
        "eventstore/registry.py",
        ("eventstore/tests/test_registry.py", "eventstore/tests/test_repository.py"),
        minimum=80.0,
    ),
    Target(
        "eventstore/serialization.py",
        (
            "eventstore/tests/test_serialization.py",
            "eventstore/tests/test_encoding.py",
            "eventstore/tests/test_registry.py",
        ),
        minimum=80.0,
    ),
    Target(
        "eventstore/repository.py",
        ("eventstore/tests/test_repository_rules.py", "eventstore/tests/test_repository.py"),
        minimum=80.0,
    ),
    Target(
        # The contract tests through test_memory_store.py, and the store's own tests there.
        "eventstore/memory.py",
        ("eventstore/tests/test_memory_store.py",),
        minimum=80.0,
    ),
    Target(
        # The invariant checker's frame: the report, registration, order, options.
        "backoffice/invariants.py",
        ("backoffice/tests/test_invariant_report.py",),
        minimum=80.0,
    ),
    Target(
        # The orders' rules: each test builds real orders through the real sagas, in this
        # process, breaks one thing and runs the checker. Not the test that counts the rules
        # in the checker's source: it reads mutmut's rewritten module, not the behaviour.
        "orders/invariants.py",
        (
            f"{_EACH_RULE}::test_the_rule_fires_alone_on_the_state_it_forbids",
            f"{_EACH_RULE}::test_a_clean_run_of_every_outcome_breaks_no_rule",
            "tests/invariants/test_order_rules.py",
            "tests/faults/test_invariants.py",
        ),
        minimum=80.0,
        database=True,
    ),
    Target(
        # The sagas' rules (at rest, dispatch), shown firing as the orders' are.
        "sagas/invariants.py",
        (
            f"{_EACH_RULE}::test_the_rule_fires_alone_on_the_state_it_forbids",
            f"{_EACH_RULE}::test_a_clean_run_of_every_outcome_breaks_no_rule",
            "tests/invariants/test_saga_rules.py",
            "tests/faults/test_invariants.py",
        ),
        minimum=80.0,
        database=True,
    ),
    Target(
        # The contract and what only PostgreSQL shows (races, late commits, immutability), the
        # repository on it, a catch-up that reads the log by event type. The fastest set that
        # reaches every method: each of these tests commits and then flushes the database, so
        # a mutant that survives costs a minute; the projections' other tests add only time.
        "eventstore/postgres.py",
        (
            "eventstore/tests/test_postgres_store.py",
            "eventstore/tests/test_repository.py",
            f"{_PROJECTIONS}::test_catch_up_applies_its_event_types_once_and_moves_the_checkpoint",
            # The order projection reads through it: healing a row, verifying every row.
            f"{_READ_SIDE}::test_each_version_of_an_order_is_the_replay_of_its_events_up_to_it",
            f"{_READ_SIDE}::test_an_event_the_row_already_holds_changes_nothing",
            f"{_READ_SIDE}::test_an_event_past_a_gap_rebuilds_the_row_from_its_stream",
            f"{_READ_SIDE}::test_an_update_for_a_missing_row_heals_it_from_its_stream",
        ),
        minimum=80.0,
        database=True,
    ),
)

#: Not copied into the scratch project: caches, the virtualenv, outputs, other work.
_NOT_COPIED = (".git", ".venv", ".local", "test-artifacts", "__pycache__", "*.pyc", ".*_cache")


@dataclass(frozen=True)
class ModuleScore:
    """Count what became of one module's mutants."""

    module: str
    killed: int
    survived: int
    timeout: int

    @property
    def score(self) -> float:
        """Return the percentage of mutants detected (killed or timed out)."""
        total = self.killed + self.survived + self.timeout
        return 100.0 * (self.killed + self.timeout) / total if total else 100.0

    def as_json(self) -> dict[str, object]:
        """Return the entry docs/mutation.json holds for the module."""
        return {
            "module": self.module,
            "killed": self.killed,
            "survived": self.survived,
            "timeout": self.timeout,
            "score": round(self.score, 1),
        }


class MutationRunError(Exception):
    """mutmut did not finish a module's run."""


def scratch_dir(target: Target) -> Path:
    """Return the folder where ``target``'s mutants are generated and run."""
    return SCRATCH / target.module.removesuffix(".py").replace("/", ".")


def mutmut_config(target: Target, project: Path) -> str:
    """Return the ``[tool.mutmut]`` section that mutates ``target`` alone in ``project``."""
    # mutmut copies the source paths into mutants/ and runs the tests there, so every package
    # the tests import must be a source path; only_mutate keeps the mutations to one module.
    packages = sorted(p.name for p in project.iterdir() if (p / "__init__.py").is_file())
    also_copy = sorted(
        p.name
        for p in project.iterdir()
        if (p.is_file() and p.suffix == ".py") or p.name == "templates"
    )
    settings: dict[str, object] = {
        "source_paths": [p for p in packages if p != "tests"],
        "only_mutate": [target.module],
        "also_copy": also_copy,
        # A listed test file may hold database tests too: they are not fast, so they never run.
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-m", "not django_db"],
        "pytest_add_cli_args_test_selection": list(target.tests),
    }
    if target.database:
        settings["pytest_add_cli_args"] = [
            "-p",
            "no:cacheprovider",
            "-q",
            # This module's pytest_sessionfinish: no connection crosses a fork.
            "-p",
            "devtools.mutation",
            # The test database outlives each session: every mutant's session reuses it.
            "--reuse-db",
            "-m",
            DATABASE_TESTS_MARKERS,
        ]
        # mutmut times a mutant out after (the tests' own time + this) x 15 seconds of wall
        # time. The measured time leaves out the session's database setup and each
        # transactional test's flush, which take far longer here than the tests themselves;
        # a timeout counts as detected, so a busy machine must not turn slowness into kills.
        settings["timeout_constant"] = 15.0
    lines = ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def prepare(target: Target) -> Path:
    """Copy the project into a fresh scratch folder configured to mutate ``target``."""
    # A test is a file, or one test of it (``file::name``).
    paths = (target.module, *(test.split("::")[0] for test in target.tests))
    missing = [p for p in paths if not (ROOT / p).is_file()]
    if missing:
        raise MutationRunError(f"{target.module}: no such file: {', '.join(missing)}")
    folder = scratch_dir(target)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(*_NOT_COPIED), symlinks=True)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + mutmut_config(target, folder))
    return folder


def check_servers(targets: Iterable[Target], environ: Mapping[str, str]) -> None:
    """Refuse to start when a selected target needs servers the environment does not name."""
    needing = [t.module for t in targets if t.database]
    unset = [name for name in SERVER_VARIABLES if not environ.get(name)]
    if needing and unset:
        raise MutationRunError(
            f"{', '.join(needing)}: the tests run on PostgreSQL and Redis; set"
            f" {' and '.join(unset)} as for make test (DATABASE_URL=postgres://user@host:port/name"
            " REDIS_URL=redis://host:port/db), or name only modules that need neither"
            " (make mutation MUTATION_MODULES=...)"
        )


def mutation_test_database(database_url: str, target: Target) -> str:
    """Return the test database of a target's run: not ``make test``'s, nor another target's.

    Two targets may run at once (two ``make mutation`` with different modules): each drops
    its database before and after its run, so they must not share one.
    """
    database = urlsplit(database_url).path.lstrip("/")
    module = target.module.removesuffix(".py").replace("/", "_")
    name = f"test_{database}_mutation_{module}"
    # PostgreSQL cuts longer names short, and two targets could then meet again.
    if len(name.encode()) > _POSTGRES_NAME_LIMIT:
        raise MutationRunError(f"{target.module}: test database name too long: {name}")
    return name


def drop_test_database(database_url: str, target: Target) -> None:
    """Drop the run's test database, and end any session a killed mutant left on it."""
    import psycopg
    from psycopg import sql

    name = sql.Identifier(mutation_test_database(database_url, target))
    with psycopg.connect(database_url, dbname="postgres", autocommit=True) as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def pytest_sessionfinish() -> None:
    """Close the test session's connections: loaded into a database target's pytest runs.

    mutmut runs its first sessions (coverage, the clean run) in its own process, then forks
    each mutant's session from it. A connection still open there would be shared by every
    child: the first to close or break it would break it for all the others.
    """
    from django.db import connections

    connections.close_all()


def _mutmut(
    folder: Path,
    *args: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    # The venv's console script: mutmut refuses to run as ``python -m mutmut``.
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    if log is None:
        return subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, check=False
        )
    with log.open("w") as out:
        return subprocess.run(
            command,
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )


def _run_mutants(target: Target, folder: Path, *, max_children: int) -> None:
    log = folder / "mutmut.log"
    command = ("run", "--max-children", str(max_children))
    if not target.database:
        ran = _mutmut(folder, *command, log=log)
    else:
        database_url = os.environ["DATABASE_URL"]
        env = {**os.environ, "TEST_DATABASE_NAME": mutation_test_database(database_url, target)}
        # Created afresh by the run's first session: a kept one may predate a migration.
        drop_test_database(database_url, target)
        try:
            ran = _mutmut(folder, *command, log=log, env=env)
        finally:
            drop_test_database(database_url, target)
    if ran.returncode != 0:
        raise MutationRunError(f"{target.module}: mutmut run exited {ran.returncode}; see {log}")


def run_target(target: Target, *, max_children: int) -> tuple[ModuleScore, list[str]]:
    """Mutate one module and run its tests; return its counts and its survivors' names."""
    folder = prepare(target)
    _run_mutants(target, folder, max_children=max_children)
    exported = _mutmut(folder, "export-cicd-stats")
    stats_file = folder / "mutants" / "mutmut-cicd-stats.json"
    if exported.returncode != 0 or not stats_file.is_file():
        raise MutationRunError(f"{target.module}: mutmut export-cicd-stats failed")
    stats = json.loads(stats_file.read_text())
    if stats["check_was_interrupted_by_user"]:
        raise MutationRunError(f"{target.module}: the run was interrupted")
    detected = stats["killed"] + stats["timeout"]
    score = ModuleScore(
        module=target.module,
        killed=stats["killed"],
        timeout=stats["timeout"],
        # Not detected: survivors, mutants no selected test reaches, suspicious ones.
        survived=stats["total"] - stats["skipped"] - detected,
    )
    listed = _mutmut(folder, "results").stdout.splitlines()
    survivors = [line.strip() for line in listed if line.strip()]
    return score, survivors


def merge_report(
    previous: Iterable[dict[str, object]], scores: Sequence[ModuleScore]
) -> list[dict[str, object]]:
    """Return the report's entries: the new scores, and earlier ones for modules not run."""
    by_module = {str(entry["module"]): entry for entry in previous}
    by_module.update({s.module: s.as_json() for s in scores})
    order = [t.module for t in TARGETS]
    return [by_module[m] for m in order if m in by_module]


def aggregate_score(scores: Sequence[ModuleScore]) -> float:
    """Return the percentage of mutants detected over all ``scores``."""
    total = ModuleScore(
        module="all",
        killed=sum(s.killed for s in scores),
        survived=sum(s.survived for s in scores),
        timeout=sum(s.timeout for s in scores),
    )
    return total.score


def select(names: Sequence[str]) -> list[Target]:
    """Return the targets named (all of them when none is)."""
    if not names:
        return list(TARGETS)
    known = {t.module: t for t in TARGETS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MutationRunError(
            f"not a mutation target: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return [known[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    """Run the selected modules, write docs/mutation.json, print the aggregate score."""
    parser = argparse.ArgumentParser(prog="python -m devtools.mutation", description=__doc__)
    parser.add_argument("modules", nargs="*", help="modules of TARGETS to run (default: all)")
    parser.add_argument("--max-children", type=int, default=DEFAULT_CHILDREN)
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    args = parser.parse_args(argv)
    try:
        targets = select(args.modules)
        check_servers(targets, os.environ)
        # Settings need server URLs to parse; the other targets' tests connect to neither.
        os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mutation-only")
        os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
        os.environ.setdefault("DEBUG", "true")
        scores: list[ModuleScore] = []
        for target in targets:
            started = time.monotonic()
            print(f"==> {target.module}: {', '.join(target.tests)}", flush=True)
            score, survivors = run_target(target, max_children=args.max_children)
            scores.append(score)
            print(
                f"    {score.killed} killed, {score.survived} survived, {score.timeout} timed out:"
                f" {score.score:.1f}% (minimum {target.minimum:.0f}%)"
                f" in {time.monotonic() - started:.0f} s",
                flush=True,
            )
            for line in survivors:
                print(f"    {line}")
                if args.show:
                    name = line.split(":")[0]
                    print(_mutmut(scratch_dir(target), "show", name).stdout)
    except MutationRunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    previous = json.loads(REPORT.read_text()) if REPORT.is_file() else []
    REPORT.write_text(json.dumps(merge_report(previous, scores), indent=2) + "\n")
    below = [
        f"{s.module} scores {s.score:.1f}%, under its minimum of {t.minimum:.0f}%"
        for s, t in zip(scores, targets, strict=True)
        if s.score < t.minimum
    ]
    for line in below:
        print(f"error: {line}", file=sys.stderr)
    print(f"mutation score: {aggregate_score(scores):.1f}%")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
