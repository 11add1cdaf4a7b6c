"""Workers on several "hosts" that share a host name, on one PostgreSQL and one broker.

Each host is a real namespace (``lab.hosts``: its own PID and UTS namespaces, the same host
name as the others, pids of its own) running a Celery worker of the project against this
session's test database and broker; a third one runs beat (the sweeper every second). The
queues are split as an operator would: host A serves ``inventory``, host B ``payments``,
both serve ``orders`` and ``maintenance``, and each has a private queue a test can aim a
message at. ``make lab-hosts`` runs this module alone and prints the figures
(docs/reliability.md records them); they are never asserted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.celery import app
from lab.hosts import NamespacedHost
from lab.worker import ARTIFACTS, delete_queue
from sagas.models import Saga, SagaStepExecution
from sagas.statuses import AttemptStatus, SagaStatus
from sagas.tasks import run_saga_step
from sagas.testing.models import Call, Effect
from sagas.tests.harness import log_of, start, wait_status
from tests.support.worker import wait_for, worker_env

pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.usefixtures("transactional_db"),
]

#: Every host's host name: the same, on purpose.
SHARED_HOSTNAME = "backoffice-host"
#: The hard time limit's grace in the hosts: with the confirm step's 10 s timeout, its
#: lease (``sagas.claims.lease_length``) is 10 + 2 * 1 = 12 s.
GRACE_SECONDS = 1
LEASE_SECONDS = 10 + 2 * GRACE_SECONDS


@dataclass
class Hosts:
    by_node: dict[str, NamespacedHost]
    private_queue: dict[str, str]
    beat: NamespacedHost

    def node_of(self, worker: str) -> str:
        """Return the Celery node in a step log's or a claim's worker name (``node/pid``)."""
        return worker.split("/", 1)[0]

    def logs(self) -> str:
        return "\n".join(
            f"===== {h.name} =====\n{h.log_tail(6000)}" for h in (*self.by_node.values(), self.beat)
        )


def _worker(node: str, queues: list[str], env: dict[str, str], first_pid: int) -> NamespacedHost:
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "--pool=prefork", "--concurrency=2",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        f"--queues={','.join(queues)}", f"--hostname={node}", "--loglevel=INFO",
    ]  # fmt: skip
    return NamespacedHost(
        name=node,
        command=command,
        env=env,
        log_path=ARTIFACTS / f"host-{node.partition('@')[0]}-{os.getpid()}.log",
        hostname=SHARED_HOSTNAME,
        first_pid=first_pid,
    )


@pytest.fixture(scope="module")
def hosts(
    django_db_setup: None, django_db_blocker: object, celery_test_queues: list[str]
) -> Iterator[Hosts]:
    """Start host A, host B (workers) and a beat host; kill every namespace at the end."""
    from django.conf import settings

    ARTIFACTS.mkdir(exist_ok=True)
    routes, maintenance = settings.SAGA_QUEUE_ROUTES, celery_test_queues[0]
    private = {
        f"host-{x}@{SHARED_HOSTNAME}": f"{settings.CELERY_QUEUE_PREFIX}host-{x}" for x in "ab"
    }
    node_a, node_b = private
    env = {
        "SAGA_HARD_TIME_LIMIT_GRACE_SECONDS": str(GRACE_SECONDS),
        "SAGA_SWEEP_INTERVAL_SECONDS": "1",
    }
    a = _worker(
        node_a,
        [routes["inventory"], routes["orders"], maintenance, private[node_a]],
        worker_env(**env),
        first_pid=20_000,
    )
    b = _worker(
        node_b,
        [routes["payments"], routes["orders"], maintenance, private[node_b]],
        worker_env(**env),
        first_pid=25_000,
    )
    schedule = Path(tempfile.mkdtemp(prefix="hosts-beat-")) / "schedule"
    beat = NamespacedHost(
        name="beat",
        command=[sys.executable, "-m", "celery", "-A", "config", "beat", "-s", str(schedule)],
        env=worker_env(**env),
        log_path=ARTIFACTS / f"host-beat-{os.getpid()}.log",
        hostname=SHARED_HOSTNAME,
        first_pid=30_000,
    )
    running = Hosts(by_node={node_a: a, node_b: b}, private_queue=private, beat=beat)
    try:
        for host in (a, b, beat):
            host.start()
        for node in private:

            def answers(node: str = node) -> bool:
                return bool(app.control.ping(destination=[node], timeout=0.5))

            wait_for(
                answers,
                timeout=90,
                message=lambda: f"the hosts' workers to answer a ping\n{running.logs()}",
            )
        yield running
    finally:
        for host in (a, b, beat):
            host.kill()
        for queue in private.values():
            delete_queue(queue)


def workers_of(saga_ids: list[uuid.UUID], step: str) -> Counter[str]:
    """Count, per Celery node, the successful attempts of ``step`` in these sagas."""
    return Counter(
        worker.split("/", 1)[0]
        for worker in SagaStepExecution.objects.filter(
            saga_id__in=saga_ids, step=step, status=AttemptStatus.SUCCEEDED
        ).values_list("worker", flat=True)
    )


def holder_of(saga_id: uuid.UUID, hosts: Hosts) -> str:
    """Wait until the saga's confirm step is claimed and running; return the holder's node."""
    wait_for(
        lambda: Call.objects.filter(saga_id=saga_id, step="confirm").exists(),
        timeout=60,
        message=lambda: f"saga {saga_id}'s confirm step to start\n{hosts.logs()}",
    )
    return hosts.node_of(Saga.objects.get(pk=saga_id).claim_worker)


def test_sagas_spread_across_the_hosts_by_queue(hosts: Hosts) -> None:
    node_a, node_b = hosts.by_node
    saga_ids = [start("test.hosts") for _ in range(8)]

    for saga_id in saga_ids:
        wait_status(saga_id, SagaStatus.COMPLETED, timeout=90)

    reserve, charge, confirm = (workers_of(saga_ids, s) for s in ("reserve", "charge", "confirm"))
    print(f"\nspread of 8 sagas: reserve {reserve}, charge {charge}, confirm {confirm}")
    assert reserve == Counter({node_a: 8}), "inventory's queue is host A's alone"
    assert charge == Counter({node_b: 8}), "payments' queue is host B's alone"
    assert sum(confirm.values()) == 8 and set(confirm) <= {node_a, node_b}


def test_a_live_claim_is_not_taken_over_by_a_host_with_the_same_name(hosts: Hosts) -> None:
    saga_id = start("test.hosts", {"slow": ["confirm:action"], "slow_seconds": 6})
    holder = holder_of(saga_id, hosts)
    other = next(node for node in hosts.by_node if node != holder)
    claim = Saga.objects.get(pk=saga_id)
    assert claim.claim_host == SHARED_HOSTNAME

    # The step's message again, straight to the other host, while the holder still runs it.
    run_saga_step.apply_async(
        kwargs={
            "saga_id": str(saga_id),
            "saga_type": "test.hosts",
            "step": "confirm",
            "phase": "action",
        },
        queue=hosts.private_queue[other],
    )
    wait_for(
        lambda: any(
            str(saga_id) in line and "message ignored" in line
            for line in hosts.by_node[other].log_tail().splitlines()
        ),
        timeout=60,
        message=lambda: f"{other} to handle the duplicate\n{hosts.logs()}",
    )
    during = Saga.objects.get(pk=saga_id)

    done = wait_status(saga_id, SagaStatus.COMPLETED, SagaStatus.COMPENSATED, timeout=60)

    assert (during.claim_token, during.redeliveries) == (claim.claim_token, 0), "taken over"
    assert done.status == SagaStatus.COMPLETED
    assert Call.objects.filter(saga_id=saga_id, step="confirm").count() == 1
    assert log_of(saga_id, "confirm") == [AttemptStatus.SUCCEEDED.value]
    assert workers_of([saga_id], "confirm") == Counter({holder: 1})


def test_a_killed_hosts_step_finishes_on_the_other_host_once_its_lease_runs_out(
    hosts: Hosts,
) -> None:
    saga_id = start("test.hosts", {"slow": ["confirm:action"], "slow_seconds": 300})
    holder = holder_of(saga_id, hosts)
    survivor = next(node for node in hosts.by_node if node != holder)
    claimed_at = Saga.objects.get(pk=saga_id).claimed_at
    assert claimed_at is not None

    hosts.by_node[holder].kill()
    killed = time.time()
    done = wait_status(saga_id, SagaStatus.COMPLETED, timeout=LEASE_SECONDS + 90)
    finished = time.time()

    print(
        f"\nhost {holder} SIGKILLed {killed - claimed_at.timestamp():.1f}s after its claim; "
        f"step finished on {survivor} {finished - killed:.1f}s after the kill, "
        f"{finished - claimed_at.timestamp():.1f}s after the claim (lease {LEASE_SECONDS}s, "
        "sweeper every 1s)"
    )
    assert done.status == SagaStatus.COMPLETED
    assert log_of(saga_id, "confirm") == [
        AttemptStatus.TIMED_OUT.value,
        AttemptStatus.SUCCEEDED.value,
    ]
    assert workers_of([saga_id], "confirm") == Counter({survivor: 1})
    assert Effect.objects.filter(saga_id=saga_id, step="confirm").count() == 1
