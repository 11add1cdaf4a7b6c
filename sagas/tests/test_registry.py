"""The registry: settings.SAGA_DEFINITIONS is the one place saga types are listed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from sagas import registry
from sagas.definitions import SagaDefinition, Step, StepCall
from sagas.errors import UnknownSagaType


def noop(call: StepCall) -> None:
    return None


TWIN = SagaDefinition(name="test.effects", steps=(Step(name="x", action=noop),))
TOO_SLOW = SagaDefinition(name="test.slow", steps=(Step(name="x", action=noop, timeout=599.0),))
NOT_A_DEFINITION = "just a string"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def test_definitions_are_found_by_name() -> None:
    assert registry.get_definition("test.effects").name == "test.effects"
    assert "test.noop4" in {d.name for d in registry.definitions()}
    with pytest.raises(UnknownSagaType, match="nope"):
        registry.get_definition("nope")


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ("sagas.tests.test_registry.TWIN", "two saga definitions"),
        ("sagas.tests.test_registry.NOT_A_DEFINITION", "not a SagaDefinition"),
        ("sagas.tests.test_registry.TOO_SLOW", "visibility timeout"),
    ],
)
def test_bad_registrations_are_refused(settings: Any, extra: str, complaint: str) -> None:
    settings.SAGA_DEFINITIONS = [*settings.SAGA_DEFINITIONS, extra]
    registry.reset()
    with pytest.raises(ImproperlyConfigured, match=complaint):
        registry.get_definition("test.effects")
