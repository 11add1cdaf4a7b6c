"""Place a few hundred orders while the lab's worker, Redis and PostgreSQL fail on a schedule.

The soak runs the whole back office on private servers (``lab.servers``): gunicorn, a Celery
worker that injects rare database and broker errors (``lab.chaos``) and Celery beat running the
sweeper. Client threads place orders over HTTP (``backoffice.loadgen``, the core of
``manage.py place_orders``) with a fixed mix (approved, flaky, declined, a
charge whose answer is lost, out of stock, later cancelled by the client); meanwhile a
scheduler, driven by how many orders have been placed, kills the whole worker, kills and
restarts Redis (with and without persistence), crashes and restarts PostgreSQL, and for a while
makes a compensation fail for good (the fault plan) so that sagas wait for an operator, and
rebuilds the order read model (``rebuild_projections orders``) while the clients keep placing
orders. At the end the fault plan is cleared, the operator retries every waiting saga over the
API, every saga settles, and ``manage.py check_invariants`` runs; every order whose charge lost
its answer must have ended CANCELLED with its money paid back. The figures are printed; the exit
status is 0 only when every saga settled, no invariant is broken, every lost-answer charge was
refunded and no saga was compensated at its confirmation (what a rebuild holding the read
model's locks used to cause).

Settings (environment): ``SOAK_ORDERS`` (300), ``SOAK_CLIENTS`` (3), ``SOAK_RATE`` (orders per
second, 4), ``SOAK_SEED`` (7), ``SOAK_FAULTS`` (comma-separated kinds, in order).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from backoffice.loadgen import (
    ApiClient,
    OrderRequest,
    Placed,
    PlacementRun,
    orders_place,
    percentile,
)
from lab.chaos import BROKER_RATE_ENV, DB_RATE_ENV
from lab.servers import Lab, LabClient, LabError, LabProduct

#: What a fault kind does to the lab (each returns once the part is back).
FAULT_KINDS = ("worker_kill", "redis_aof", "redis_volatile", "postgres")
DEFAULT_FAULTS = (
    "worker_kill",
    "redis_aof",
    "postgres",
    "worker_kill",
    "redis_volatile",
    "postgres",
)
#: The processor takes the money and every answer is lost: the order must end refunded.
LOST_ANSWER = "tok_lostResponse"
#: One order in twenty-one of each kind; the order of the list spreads them over the run.
MIX = (
    ["tok_visa"] * 9
    + ["tok_flaky"] * 3
    + ["tok_chargeDeclined", "tok_chargeDeclinedInsufficientFunds"]
    + [LOST_ANSWER]
    + ["scarce"] * 3
    + ["cancel"] * 2
)
PRODUCTS = [LabProduct(f"SOAK-{n}", 1_000_000, price=f"{n * 3}.25") for n in range(1, 7)]


@dataclass(frozen=True)
class SoakConfig:
    """Say how big the soak is and which faults it injects."""

    orders: int = 300
    clients: int = 3
    rate: float = 4.0
    seed: int = 7
    faults: tuple[str, ...] = DEFAULT_FAULTS
    db_error_rate: float = 0.002
    broker_error_rate: float = 0.01
    settle_timeout: float = 240.0

    @classmethod
    def from_env(cls) -> SoakConfig:
        """Read the settings from ``SOAK_*`` environment variables (defaults otherwise)."""
        faults = os.environ.get("SOAK_FAULTS")
        config = cls(
            orders=int(os.environ.get("SOAK_ORDERS") or cls.orders),
            clients=int(os.environ.get("SOAK_CLIENTS") or cls.clients),
            rate=float(os.environ.get("SOAK_RATE") or cls.rate),
            seed=int(os.environ.get("SOAK_SEED") or cls.seed),
            faults=tuple(f.strip() for f in faults.split(",") if f.strip())
            if faults
            else DEFAULT_FAULTS,
        )
        unknown = set(config.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        return config


@dataclass
class FaultRecord:
    """One fault injected: what, when (seconds into the run), for how long, recovered when."""

    kind: str
    at: float
    down: float
    recovery: float


@dataclass
class SoakResult:
    """The figures of one soak run."""

    orders: int = 0
    probes: int = 0
    duration: float = 0.0
    #: Of the POST /api/orders/ that got the 202, in seconds (faults included).
    latency_p50: float = 0.0
    latency_p99: float = 0.0
    order_statuses: Counter[str] = field(default_factory=Counter)
    cancellation_reasons: Counter[str] = field(default_factory=Counter)
    saga_statuses: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    faults: list[FaultRecord] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    waited_for_operator: int = 0
    operator_retries: int = 0
    client_cancels: int = 0
    #: Orders placed with ``LOST_ANSWER``, and those of them CANCELLED with every cent back.
    lost_answers: int = 0
    lost_answers_refunded: int = 0
    #: ``rebuild_projections orders`` run once while the clients keep placing orders.
    rebuilds: int = 0
    rebuild_summary: str = ""
    #: Sagas that compensated at confirm_order: none may (a rebuild used to time them out).
    compensated_at_confirm: int = 0
    settle_seconds: float = 0.0
    invariants_output: str = ""
    violations: int = 0
    unsettled: int = 0
    #: Per process, the last log line of each exit nobody asked for (the lab restarted it).
    crashes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Tell whether every saga settled, no invariant is broken, every lost answer refunded."""
        return (
            self.violations == 0
            and self.unsettled == 0
            and self.lost_answers_refunded == self.lost_answers
            and self.compensated_at_confirm == 0
        )

    def lines(self) -> list[str]:
        """Describe the run for people, one figure a line."""

        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        kinds = Counter(f.kind for f in self.faults)
        recoveries = [f.recovery for f in self.faults]
        return [
            f"orders placed: {self.orders} (+{self.probes} recovery probes) in "
            f"{self.duration:.0f} s",
            f"latency of POST /api/orders/: p50 {self.latency_p50 * 1000:.0f} ms, "
            f"p99 {self.latency_p99 * 1000:.0f} ms",
            f"order outcomes: {counts(self.order_statuses)}",
            f"cancellation reasons: {counts(self.cancellation_reasons)}",
            f"sagas: {counts(self.saga_statuses)}",
            f"step attempts: {counts(self.attempts)}",
            f"faults injected: {len(self.faults)} ({counts(kinds)})",
            f"injected errors in the worker: {counts(self.injected)}",
            f"compensations failed on purpose (waited for an operator): "
            f"{self.waited_for_operator}; operator retries after clearing: "
            f"{self.operator_retries}",
            f"cancellations of confirmed orders: {self.client_cancels}",
            f"charges whose answer was lost: {self.lost_answers}, cancelled and refunded: "
            f"{self.lost_answers_refunded}",
            f"read-model rebuilds during traffic: {self.rebuilds} ({self.rebuild_summary}); "
            f"sagas compensated at confirm_order: {self.compensated_at_confirm}",
            "processes that exited unasked (restarted, as a service manager would): "
            + (
                "; ".join(
                    f"{name} {len(lines)}x ({lines[-1][:140]})"
                    for name, lines in sorted(self.crashes.items())
                )
                or "none"
            ),
            "recovery (fault start -> next order completed): "
            + ", ".join(f"{f.kind} {f.recovery:.1f} s" for f in self.faults)
            + (f"; max {max(recoveries):.1f} s" if recoveries else ""),
            f"settled {self.settle_seconds:.1f} s after the last order; unsettled: "
            f"{self.unsettled}",
            f"invariant violations: {self.violations}",
        ]


class Soak:
    """One soak run over a lab (see the module docstring)."""

    def __init__(self, config: SoakConfig, lab: Lab, say: Callable[[str], None]) -> None:
        self.config = config
        self.lab = lab
        self.say = say
        self.result = SoakResult()
        self.started = time.monotonic()
        self._placed = 0
        self._placement = PlacementRun()
        self._lock = threading.Lock()
        self._to_cancel: list[str] = []
        self._lost_answers: list[str] = []
        self._clients: list[threading.Thread] = []
        order = list(range(len(MIX)))
        random.Random(config.seed).shuffle(order)  # noqa: S311 (a reproducible mix, not secrets)
        self._mix = [MIX[i] for i in order]

    # --- clients ------------------------------------------------------------------------

    def _request_for(self, index: int) -> OrderRequest:
        kind = self._mix[index % len(self._mix)]
        items = [(f"SOAK-{index % len(PRODUCTS) + 1}", 1 + index % 3)]
        if kind == "scarce":
            items.append(("SOAK-SCARCE", 1 + index % 3))
        token = kind if kind.startswith("tok_") else "tok_visa"
        return OrderRequest(tuple(items), token, customer_id="c-lab")

    def _placed_one(self, placed: Placed) -> None:
        kind = self._mix[placed.index % len(self._mix)]
        with self._lock:
            self._placed += 1
            if kind == "cancel":
                self._to_cancel.append(placed.order_id)
            elif kind == LOST_ANSWER:
                self._lost_answers.append(placed.order_id)

    def _place_all(self) -> None:
        # The load generator's core (manage.py place_orders runs the same): one pacing
        # schedule for every client thread, each order retried through outages with its
        # Idempotency-Key.
        self._placement = orders_place(
            client_factory=lambda: ApiClient(self.lab.base_url, self.lab.staff_token),
            count=self.config.orders,
            rate=self.config.rate,
            concurrency=self.config.clients,
            request_for=self._request_for,
            place_timeout=180,
            on_placed=self._placed_one,
        )

    # --- the schedule ---------------------------------------------------------------------

    def _wait_placed(self, count: int) -> None:
        while self._placed < count and any(t.is_alive() for t in self._clients):
            time.sleep(0.1)

    def _schedule(self) -> None:
        n = self.config.orders
        faults = self.config.faults
        # Faults spread over 10%..90% of the orders; the failing compensation from 30% to 45%.
        steps = [(0.1 + 0.8 * i / max(1, len(faults) - 1), kind) for i, kind in enumerate(faults)]
        steps += [(0.3, "compensations_fail"), (0.45, "compensations_heal"), (0.55, "rebuild")]
        for fraction, what in sorted(steps, key=lambda s: s[0]):
            self._wait_placed(int(n * fraction))
            if what == "compensations_fail":
                self._fail_compensations()
            elif what == "compensations_heal":
                self.lab.manage("faults", "clear")
                self.say("fault plan cleared")
            elif what == "rebuild":
                self._rebuild()
            else:
                self._inject(what)

    def _fail_compensations(self) -> None:
        self.lab.manage(
            "faults", "set", "place_order", "reserve_inventory",
            "--phase", "compensation", "--mode", "permanent",
        )  # fmt: skip
        # One declined order while the rule holds: at least one saga must wait for an operator.
        order_id, _ = self.lab.client().place([("SOAK-1", 1)], "tok_chargeDeclined", timeout=120)
        self.result.probes += 1
        self._wait_saga(order_id, {"COMPENSATION_FAILED"})
        self.say("a compensation now fails for good (fault plan): sagas wait for an operator")

    def _rebuild(self) -> None:
        # The clients go on placing orders meanwhile: confirmations must not wait on it.
        began = time.monotonic()
        output = self.lab.manage("rebuild_projections", "orders", timeout=600).stdout
        summary = output.strip().splitlines()[-1] if output.strip() else ""
        self.result.rebuilds += 1
        self.result.rebuild_summary = summary
        self.say(
            f"rebuild_projections orders during traffic, {time.monotonic() - began:.1f} s: "
            f"{summary}"
        )

    def _inject(self, kind: str) -> None:
        began = time.monotonic()
        at = began - self.started
        if kind == "worker_kill":
            self.lab.kill_worker()
            time.sleep(1.0)
            self.lab.worker.start()
            down = time.monotonic() - began
        elif kind == "redis_aof":
            down = self.lab.restart_redis(persistent=True, down_for=1.5)
        elif kind == "redis_volatile":
            down = self.lab.restart_redis(persistent=False, down_for=1.5)
            self.lab.redis.persistent = True
        else:
            down = self.lab.restart_postgres(down_for=2.0)
        # Recovered once a brand-new order goes all the way through.
        order_id, _ = self.lab.client().place([("SOAK-2", 1)], "tok_visa", timeout=180)
        self.result.probes += 1
        self._wait_saga(order_id, {"COMPLETED"})
        record = FaultRecord(kind=kind, at=at, down=down, recovery=time.monotonic() - began)
        self.result.faults.append(record)
        self.say(
            f"{at:6.1f} s  {kind}: down {down:.1f} s, an order completed "
            f"{record.recovery:.1f} s after the fault"
        )

    def _wait_saga(self, order_id: str, statuses: set[str], timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                rows = self.lab.sql(
                    "SELECT status FROM sagas_saga WHERE subject = %s ORDER BY created_at",
                    [f"order:{order_id}"],
                )
            except Exception:  # the database may be restarting: poll again
                rows = []
            if rows and rows[-1][0] in statuses:
                return str(rows[-1][0])
            time.sleep(0.2)
        sagas = self.lab.sql(
            "SELECT saga_type, status, current_step, current_phase, attempt, due_at, "
            "dispatched_at, claim_token, deadline AS lease_until, now() FROM sagas_saga "
            "WHERE subject = %s",
            [f"order:{order_id}"],
        )
        raise LabError(
            f"order {order_id}'s saga did not reach {statuses} in {timeout}s: {sagas}\n"
            f"{self.lab.logs()}"
        )

    # --- the end ------------------------------------------------------------------------

    def _cancel_confirmed(self, client: LabClient) -> None:
        for order_id in self._to_cancel:
            status = self._wait_order(order_id)
            if status != "CONFIRMED":
                continue
            response = client.post(f"/api/orders/{order_id}/cancel/")
            if response.status_code != 202:
                raise LabError(f"cancel of {order_id}: {response.status_code} {response.text}")
            self.result.client_cancels += 1

    def _wait_order(self, order_id: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.lab.sql(
                "SELECT o.status, s.status FROM orders_order o JOIN sagas_saga s "
                "ON s.subject = 'order:' || o.id::text AND s.saga_type = 'place_order' "
                "WHERE o.id = %s",
                [order_id],
            )
            if rows and rows[0][1] in ("COMPLETED", "COMPENSATED", "COMPENSATION_FAILED"):
                return str(rows[0][0])
            time.sleep(0.2)
        raise LabError(f"order {order_id} did not settle in {timeout}s")

    def _retry_waiting(self, client: LabClient) -> None:
        waiting = [
            str(row[0])
            for row in self.lab.sql(
                "SELECT id FROM sagas_saga WHERE status = 'COMPENSATION_FAILED' ORDER BY created_at"
            )
        ]
        self.result.waited_for_operator = len(waiting)
        for saga_id in waiting:
            response = client.post(f"/api/sagas/{saga_id}/retry/")
            if response.status_code != 202:
                raise LabError(f"retry of saga {saga_id}: {response.status_code} {response.text}")
            self.result.operator_retries += 1

    def run(self) -> SoakResult:
        """Run the soak and return its figures."""
        self._clients = [threading.Thread(target=self._place_all, name="soak-clients", daemon=True)]
        for thread in self._clients:
            thread.start()
        self._schedule()
        for thread in self._clients:
            thread.join()
        errors = self._placement.errors
        if errors:
            raise LabError(f"{len(errors)} order(s) could not be placed: {errors[0]}")
        last_order = time.monotonic()
        self.result.orders = self._placed
        latencies = [p.latency for p in self._placement.placed]
        self.result.latency_p50 = percentile(latencies, 0.50)
        self.result.latency_p99 = percentile(latencies, 0.99)
        self.result.duration = last_order - self.started
        operator = self.lab.client()
        self._cancel_confirmed(operator)
        self.lab.manage("faults", "clear")
        self.lab.wait_settled(timeout=self.config.settle_timeout)
        self._retry_waiting(operator)
        # Whatever still moves after the bound is counted as unsettled, and fails the soak.
        with contextlib.suppress(LabError):
            self.lab.wait_settled(timeout=self.config.settle_timeout)
        self.result.settle_seconds = time.monotonic() - last_order
        self._collect()
        return self.result

    def _collect(self) -> None:
        lab, result = self.lab, self.result
        result.unsettled = lab.moving() or 0
        result.saga_statuses.update(dict(lab.saga_counts()))
        for status, reason, count in lab.sql(
            "SELECT status, cancellation_reason, count(*) FROM orders_order GROUP BY 1, 2"
        ):
            result.order_statuses[status] += count
            if reason:
                result.cancellation_reasons[reason] += count
        result.attempts.update(
            dict(lab.sql("SELECT status, count(*) FROM sagas_sagastepexecution GROUP BY status"))
        )
        result.injected.update(
            re.findall(r"injected (database|broker) error", lab.worker.log_text())
        )
        result.crashes = {
            name: [last for _at, _code, last in exits] for name, exits in lab.crashes().items()
        }
        result.compensated_at_confirm = lab.sql(
            "SELECT count(*) FROM sagas_saga WHERE failure_step = 'confirm_order'"
        )[0][0]
        result.lost_answers = len(self._lost_answers)
        result.lost_answers_refunded = self._count_refunded(self._lost_answers)
        checked = lab.check_invariants()
        result.invariants_output = (checked.stdout + checked.stderr).strip()
        match = re.search(r"(\d+) violation\(s\)", result.invariants_output)
        result.violations = int(match.group(1)) if match else (1 if checked.returncode else 0)

    def _count_refunded(self, order_ids: list[str]) -> int:
        """Count the orders that ended CANCELLED with a charge taken and all of it paid back."""
        if not order_ids:
            return 0
        rows = self.lab.sql(
            "SELECT count(*) FROM orders_order o "
            "JOIN payments_payment p ON p.order_id = o.id AND p.status = 'REFUNDED' "
            "JOIN payments_refund r ON r.payment_id = p.id AND r.amount = p.amount "
            "WHERE o.id = ANY(%s::uuid[]) AND o.status = 'CANCELLED'",
            [order_ids],
        )
        return int(rows[0][0])


def soak_run(config: SoakConfig, *, say: Callable[[str], None]) -> SoakResult:
    """Start a lab, run the soak in it, stop the lab; return the figures."""
    say(
        f"soak: {config.orders} orders, {config.clients} clients at {config.rate}/s, "
        f"faults {', '.join(config.faults)}"
    )
    lab = Lab(
        [*PRODUCTS, LabProduct("SOAK-SCARCE", max(6, config.orders // 15))],
        worker_app="lab.chaos",
        worker_env={
            DB_RATE_ENV: str(config.db_error_rate),
            BROKER_RATE_ENV: str(config.broker_error_rate),
        },
    )
    opened = time.monotonic()
    with lab:
        say(f"lab up in {time.monotonic() - opened:.1f} s (private PostgreSQL and Redis)")
        return Soak(config, lab, say).run()


def main() -> int:
    """Run the soak configured by the environment, print its figures; 0 when all is well."""
    config = SoakConfig.from_env()
    result = soak_run(config, say=_say)
    _say("\n".join(["", "== soak figures ==", *result.lines(), result.invariants_output]))
    return 0 if result.ok else 1


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
