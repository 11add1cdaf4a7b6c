"""Place orders over the HTTP API at a steady rate and follow them to their outcome.

The load generator behind ``manage.py place_orders`` and the soak (``soak/run.py``): it
speaks to a running server as a client system would (``POST /api/orders/`` with an API token
and an ``Idempotency-Key``, then ``GET /api/orders/{id}/``), so every order goes through the
real path: the view, ``order_place``, the broker, the workers. It imports nothing of Django,
so the soak runs it outside any Django process.

Pacing is one schedule for all client threads: order ``i`` is sent no earlier than ``i / rate``
seconds after the start, so ``concurrency`` bounds how many requests are open at once and
``rate`` how many start per second. A request that fails for a reason that may pass (the
connection, a 5xx, a 409 while the first request with the key is in flight, a 429) is sent
again with the same key until ``place_timeout``: the server answers a repeat with the first
answer, so an order is never placed twice.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

#: The ``--mix`` kinds and the simulated gateway's payment token of each (payments/simulated.py).
MIX_TOKENS: Mapping[str, str] = {
    "visa": "tok_visa",
    "declined": "tok_chargeDeclined",
    "insufficient": "tok_chargeDeclinedInsufficientFunds",
    "flaky": "tok_flaky",
    "lost": "tok_lostResponse",
}
DEFAULT_MIX = "visa=90,declined=5,flaky=5"
#: Saga statuses after which an order moves no more without an operator.
SETTLED_SAGA_STATUSES = frozenset({"COMPLETED", "COMPENSATED", "COMPENSATION_FAILED"})
FINAL_ORDER_STATUSES = frozenset({"CONFIRMED", "CANCELLED"})


class MixError(ValueError):
    """Say what is wrong with a ``--mix`` text."""


class PlacementError(RuntimeError):
    """Say why an order could not be placed (refused, or no answer before the timeout)."""


def mix_parse(text: str) -> dict[str, int]:
    """Read ``kind=weight,…`` into weights by kind; raise ``MixError`` naming the problem."""
    weights: dict[str, int] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        kind, sep, weight_text = part.partition("=")
        kind = kind.strip()
        if not sep:
            raise MixError(f"{part!r} is not KIND=WEIGHT (for example {DEFAULT_MIX})")
        if kind not in MIX_TOKENS:
            raise MixError(f"unknown kind {kind!r}; known: {', '.join(MIX_TOKENS)}")
        if kind in weights:
            raise MixError(f"{kind!r} is given twice")
        try:
            weight = int(weight_text.strip())
        except ValueError:
            raise MixError(
                f"the weight of {kind!r} must be a whole number, not {weight_text!r}"
            ) from None
        if weight < 0:
            raise MixError(f"the weight of {kind!r} must not be negative")
        weights[kind] = weight
    if not any(weights.values()):
        raise MixError(f"the mix {text!r} gives no order a kind: at least one weight above 0")
    return weights


def mix_sequence(weights: Mapping[str, int], *, seed: int) -> list[str]:
    """Return one cycle of kinds, each as often as its weight, in an order fixed by ``seed``.

    Order ``i`` takes the kind at ``i % len(cycle)``: any run of one cycle holds the mix
    exactly, and the shuffle spreads the rare kinds over the run instead of bunching them.
    """
    cycle = [kind for kind, weight in weights.items() for _ in range(weight)]
    random.Random(seed).shuffle(cycle)  # noqa: S311 (a reproducible spread, not a secret)
    return cycle


@dataclass(frozen=True)
class OrderRequest:
    """What one order asks for: its lines (sku, quantity) and its payment token."""

    items: tuple[tuple[str, int], ...]
    payment_token: str
    customer_id: str = "c-load"

    def body(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in self.items],
            "payment_token": self.payment_token,
        }


@dataclass(frozen=True)
class Placed:
    """An order the server took: its index in the run, id, answer time and tries."""

    index: int
    order_id: str
    latency: float
    attempts: int


class ApiClient:
    """Speak to the back office's API with a token, as a client system does."""

    def __init__(self, base_url: str, token: str, *, request_timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.request_timeout = request_timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.base_url + path, params=params, timeout=self.request_timeout)

    def post(self, path: str, body: Any = None, **headers: str) -> requests.Response:
        return self.session.post(
            self.base_url + path, json=body, headers=headers, timeout=self.request_timeout
        )

    def place(self, request: OrderRequest, *, timeout: float = 60.0) -> tuple[str, float, int]:
        """Place an order, retrying what may pass with the same key; return (id, s, tries).

        The time is that of the request that got the 202. Raise ``PlacementError`` when the
        server refuses the order (a 4xx other than 409 and 429) or gives no 202 in ``timeout``.
        """
        key = str(uuid.uuid4())
        body = request.body()
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            pause = 0.5
            sent = time.monotonic()
            try:
                response = self.post("/api/orders/", body, **{"Idempotency-Key": key})
                latency = time.monotonic() - sent
                if response.status_code == 202:
                    return str(response.json()["id"]), latency, attempts
                problem = f"{response.status_code} {response.text[:300]}"
                if response.status_code == 429:
                    pause = _retry_after(response, default=1.0)
                elif response.status_code != 409 and response.status_code < 500:
                    raise PlacementError(f"order refused: {problem}")
            except requests.RequestException as exc:
                problem = str(exc)
            if time.monotonic() + pause > deadline:
                raise PlacementError(f"no order placed in {timeout:.0f}s: {problem}")
            time.sleep(pause)

    def order(self, order_id: str) -> dict[str, Any]:
        """Return the order as the API shows it (raise for an answer other than 200)."""
        response = self.get(f"/api/orders/{order_id}/")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def products_in_stock(self, *, limit: int = 50) -> list[str]:
        """Return the SKUs of the catalogue's first page that have stock available."""
        response = self.get("/api/products/", page_size=limit)
        response.raise_for_status()
        return [p["sku"] for p in response.json()["results"] if p["stock_available"] > 0]


def _retry_after(response: requests.Response, *, default: float) -> float:
    try:
        return max(0.1, float(response.headers.get("Retry-After", default)))
    except ValueError:
        return default


@dataclass
class PlacementRun:
    """What the placing phase did: the orders taken, the errors, how long it took."""

    placed: list[Placed] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0


def orders_place(
    *,
    client_factory: Callable[[], ApiClient],
    count: int,
    rate: float,
    concurrency: int,
    request_for: Callable[[int], OrderRequest],
    place_timeout: float = 60.0,
    on_placed: Callable[[Placed], None] = lambda _placed: None,
    on_error: Callable[[int, str], None] = lambda _index, _error: None,
) -> PlacementRun:
    """Place ``count`` orders from ``concurrency`` threads at ``rate`` per second (0: no limit).

    ``request_for(i)`` says what order ``i`` asks for. ``on_placed`` and ``on_error`` are
    called from the client threads as each order is taken or given up on.
    """
    run = PlacementRun()
    lock = threading.Lock()
    indexes = itertools.count()
    started = time.monotonic()

    def client_loop() -> None:
        client = client_factory()
        while True:
            with lock:
                index = next(indexes)
            if index >= count:
                return
            if rate > 0:
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
            try:
                order_id, latency, attempts = client.place(
                    request_for(index), timeout=place_timeout
                )
            except Exception as exc:  # counted as an error; the run goes on
                problem = str(exc) if isinstance(exc, PlacementError) else repr(exc)
                with lock:
                    run.errors.append(f"order {index}: {problem}")
                on_error(index, problem)
                continue
            placed = Placed(index, order_id, latency, attempts)
            with lock:
                run.placed.append(placed)
            on_placed(placed)

    threads = [
        threading.Thread(target=client_loop, name=f"load-client-{n}", daemon=True)
        for n in range(max(1, min(concurrency, count)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.duration = time.monotonic() - started
    run.placed.sort(key=lambda p: p.index)
    return run


@dataclass(frozen=True)
class Outcome:
    """Where an order ended: ``confirmed``, ``cancelled`` (with its reason) or
    ``waiting_for_operator`` (its saga stopped at COMPENSATION_FAILED)."""

    order_id: str
    outcome: str
    reason: str = ""


def outcome_of(order: Mapping[str, Any]) -> Outcome | None:
    """Tell the outcome of an order as the API shows it, or None while it still moves."""
    order_id = str(order["id"])
    saga = order.get("saga") or {}
    if order["status"] in FINAL_ORDER_STATUSES and saga.get("status") in SETTLED_SAGA_STATUSES:
        if order["status"] == "CONFIRMED":
            return Outcome(order_id, "confirmed")
        return Outcome(order_id, "cancelled", order.get("cancellation_reason") or "")
    if saga.get("status") == "COMPENSATION_FAILED":
        return Outcome(order_id, "waiting_for_operator")
    return None


def orders_follow(
    *,
    client_factory: Callable[[], ApiClient],
    order_ids: Sequence[str],
    concurrency: int,
    timeout: float,
    interval: float = 0.5,
    on_settled: Callable[[Outcome], None] = lambda _outcome: None,
) -> tuple[list[Outcome], list[str]]:
    """Poll each order until it settles or ``timeout`` passes; return (outcomes, unsettled)."""
    local = threading.local()

    def look(order_id: str) -> Outcome | None:
        if not hasattr(local, "client"):
            local.client = client_factory()
        try:
            return outcome_of(local.client.order(order_id))
        except requests.RequestException:
            return None  # the server may be restarting: ask again next round

    outcomes: list[Outcome] = []
    pending = list(order_ids)
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        while pending:
            still: list[str] = []
            for order_id, outcome in zip(pending, pool.map(look, pending), strict=True):
                if outcome is None:
                    still.append(order_id)
                else:
                    outcomes.append(outcome)
                    on_settled(outcome)
            pending = still
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(interval)
    return outcomes, pending


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


@dataclass
class LoadSummary:
    """The figures of one run of the load generator."""

    requested: int
    placement: PlacementRun
    outcomes: list[Outcome] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    followed: bool = True

    @property
    def placed(self) -> int:
        return len(self.placement.placed)

    @property
    def by_outcome(self) -> Counter[str]:
        return Counter(o.outcome for o in self.outcomes)

    @property
    def cancelled_by_reason(self) -> Counter[str]:
        return Counter(o.reason or "unknown" for o in self.outcomes if o.outcome == "cancelled")

    @property
    def ok(self) -> bool:
        """Tell whether every order was placed and (when followed) settled."""
        return not self.placement.errors and not self.unsettled and self.placed == self.requested

    def lines(self) -> list[str]:
        """Describe the run for people, one figure a line."""
        latencies = [p.latency for p in self.placement.placed]
        retried = sum(1 for p in self.placement.placed if p.attempts > 1)
        rate = self.placed / self.placement.duration if self.placement.duration else 0.0
        lines = [
            f"placed: {self.placed} of {self.requested} in {self.placement.duration:.1f}s "
            f"({rate:.1f} orders/s; {retried} needed more than one try)",
            f"latency of POST /api/orders/: p50 {percentile(latencies, 0.50) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
            f"max {max(latencies, default=0.0) * 1000:.0f} ms",
        ]
        if self.followed:
            outcomes = self.by_outcome
            reasons = ", ".join(
                f"{reason} {n}" for reason, n in sorted(self.cancelled_by_reason.items())
            )
            lines += [
                f"confirmed: {outcomes['confirmed']}",
                f"cancelled: {outcomes['cancelled']}" + (f" ({reasons})" if reasons else ""),
                f"waiting for an operator: {outcomes['waiting_for_operator']}",
                f"unsettled at the end: {len(self.unsettled)}",
            ]
        lines.append(f"errors: {len(self.placement.errors)}")
        lines += [f"  {error}" for error in self.placement.errors[:5]]
        return lines
