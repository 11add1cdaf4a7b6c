"""The benchmark's saga: four steps that do nothing (no model import, so any process can load it).

``bench.saga_throughput`` registers it in a process whose settings did not (the bench harness
sets Django up before any benchmark runs); its worker lists it through ``SAGA_TESTING``.
"""

from __future__ import annotations

from sagas.definitions import SagaDefinition, Step, StepCall


def noop(call: StepCall) -> None:
    """Do nothing."""
    return None


NOOP4 = SagaDefinition(
    name="test.noop4",
    steps=tuple(Step(name=f"s{i}", action=noop, compensation=noop) for i in range(1, 5)),
)
