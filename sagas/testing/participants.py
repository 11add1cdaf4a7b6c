"""The test sagas' participant: it records its calls and its effects.

The recording participant writes a :class:`~sagas.testing.models.Call` row on every call and an
:class:`~sagas.testing.models.Effect` row keyed by its idempotency key, so a test can tell how
often the engine called it and prove the effect happened once. The saga's context steers it:

- ``fail_at``: the step whose action raises a business failure (code ``test_failure``);
- ``slow``: ``"step:phase"`` entries that sleep ``slow_seconds`` after their effect, on their
  first call only (a test kills the worker child in that window);
- ``sleep_first``: ``"step:phase"`` entries that sleep ``sleep_seconds`` *before* their
  effect on the first call (to run past a short timeout);
- ``crash_first``: ``"step:phase"`` entries that raise an unexpected RuntimeError on their
  first call (a bug, or a passing database error).

It returns ``{"step:phase": attempt}`` (and, in a compensation, the failure's code under
``"step:phase:failure"``), so tests can see results merge into the context.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sagas.definitions import StepBusinessFailure, StepCall
from sagas.testing.models import Call, Effect


def record(call: StepCall) -> dict[str, Any]:
    """Record the call and the effect once, fail or dawdle when the context says so."""
    this = Call.objects.create(
        saga_id=call.saga_id,
        step=call.step,
        phase=call.phase,
        attempt=call.attempt,
        pid=os.getpid(),
    )
    first_call = (
        not Call.objects.filter(saga_id=call.saga_id, step=call.step, phase=call.phase)
        .exclude(pk=this.pk)
        .exists()
    )
    target = f"{call.step}:{call.phase}"
    if call.phase == "action" and call.context.get("fail_at") == call.step:
        raise StepBusinessFailure("test_failure", f"told to fail at {call.step}")
    if first_call and target in call.context.get("crash_first", ()):
        raise RuntimeError(f"simulated bug in {target}")
    if first_call and target in call.context.get("sleep_first", ()):
        time.sleep(float(call.context.get("sleep_seconds", 3)))
    Effect.objects.get_or_create(
        key=call.idempotency_key,
        defaults={"saga_id": call.saga_id, "step": call.step, "phase": call.phase},
    )
    if first_call and target in call.context.get("slow", ()):
        time.sleep(float(call.context.get("slow_seconds", 5)))
    result: dict[str, Any] = {target: call.attempt}
    if call.failure is not None:
        result[f"{target}:failure"] = call.failure.code
    return result
