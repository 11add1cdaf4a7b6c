"""Claim a saga's current attempt from another PID namespace, then hold it until stdin closes.

Run by ``test_worker_identity`` under ``unshare --pid --uts --fork --mount-proc``: a worker
on a second "host" that shares this host's name (the UTS namespace starts as a copy).
Prints ``claimed <pid>`` once the claim is written.
"""

from __future__ import annotations

import os
import sys
from uuid import UUID

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
django.setup()

from django.utils import timezone  # noqa: E402

from sagas.claims import Claimed, attempt_claim  # noqa: E402
from sagas.models import Saga  # noqa: E402
from sagas.statuses import Phase  # noqa: E402
from sagas.workers import current_worker  # noqa: E402


def main(saga_id: UUID) -> None:
    """Claim ``saga_id``'s current attempt as this process and keep it until told to stop."""
    saga = Saga.objects.get(pk=saga_id)
    claimed = attempt_claim(
        saga_id=saga_id,
        step=saga.current_step,
        phase=Phase(saga.current_phase),
        worker=current_worker("namespaced"),
        now=timezone.now(),
    )
    assert isinstance(claimed, Claimed), claimed
    print(f"claimed {os.getpid()}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main(UUID(sys.argv[1]))
