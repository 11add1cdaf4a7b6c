"""Schemathesis over the whole OpenAPI schema, every check, against a live server.

The API is served by pytest-django's live server (a real socket) on the test database, and
schemathesis's command line fuzzes every operation of /api/schema/: examples, coverage,
fuzzing and stateful phases, all checks (no 5xx, no undocumented status code, responses that
match the schema, invalid data refused, valid data accepted, auth not ignored, ...). Once as
a superuser with a token, so every operation is reached past its permission check, and once
as a client system without staff rights.

No worker runs: placed orders stay PENDING with their saga RUNNING (the API answers 202),
and their step messages go to this test session's own queue (tests/support/worker.py).

Size and seed: ``FUZZ_MAX_EXAMPLES`` (default 25 per operation) and ``FUZZ_SEED`` (fixed by
default, so a failure is repeatable; give another seed to explore further).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from knox.models import AuthToken

from sagas.tests.harness import failed_compensation_saga
from tests.factories import make_product, make_user

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))
#: A bound that only keeps a broken run from hanging the suite (about 80 s here).
RUN_TIMEOUT = 600

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(RUN_TIMEOUT + 120),
]


@pytest.fixture
def isolated_cache(settings: Any) -> None:
    """Count throttling in keys of this test alone: other runs share the Redis."""
    caches = {name: dict(config) for name, config in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"fuzz-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def catalogue() -> None:
    # SKU-1 is the schema's example order: the examples phase places real orders with it.
    for sku in ("SKU-1", "SKU-2", "SKU-3"):
        make_product(sku, price="9.99", stock=100_000)


def run_schemathesis(
    base_url: str, token: str, workdir: Path, *, max_examples: int, config_extra: str = ""
) -> subprocess.CompletedProcess[str]:
    config = workdir / "schemathesis.toml"
    config.write_text((HERE / "schemathesis.toml").read_text() + config_extra)
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base_url}/api/schema/",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Token {token}",
    ]
    result = subprocess.run(
        command,
        cwd=workdir,  # its .hypothesis/ and .schemathesis/ folders stay out of the checkout
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    print(result.stdout[-20000:])
    print(result.stderr[-5000:])
    return result


def assert_every_operation_tested(report: str) -> None:
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected and tested, "no operation summary in schemathesis's report"
    assert selected[1] == selected[2] == tested[1], "some operations were not tested"
    assert int(tested[1]) >= 11, "the schema lost operations"


def test_schemathesis_finds_nothing_as_a_superuser(
    live_server: Any, isolated_cache: None, catalogue: None, tmp_path: Path
) -> None:
    superuser = make_user(superuser=True)
    _, token = AuthToken.objects.create(user=superuser)
    to_retry, to_skip = failed_compensation_saga(), failed_compensation_saga()
    # Retry and skip act on real sagas waiting for an operator (random ids only reach 404).
    config_extra = f"""
[[operations]]
include-operation-id = "sagas_retry_create"
parameters = {{ "saga_id" = "{to_retry}" }}

[[operations]]
include-operation-id = "sagas_skip_create"
parameters = {{ "saga_id" = "{to_skip}" }}
"""

    result = run_schemathesis(
        live_server.url, token, tmp_path, max_examples=MAX_EXAMPLES, config_extra=config_extra
    )

    assert result.returncode == 0, "schemathesis found failures (its report is printed above)"
    assert_every_operation_tested(result.stdout)


def test_schemathesis_finds_nothing_as_a_client_system(
    live_server: Any, isolated_cache: None, catalogue: None, tmp_path: Path
) -> None:
    client = make_user()
    _, token = AuthToken.objects.create(user=client)

    result = run_schemathesis(
        live_server.url, token, tmp_path, max_examples=max(1, MAX_EXAMPLES // 3)
    )

    assert result.returncode == 0, "schemathesis found failures (its report is printed above)"
