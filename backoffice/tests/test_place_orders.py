"""The load generator: ``place_orders`` over a live server, with a real Celery worker."""

from __future__ import annotations

import socket
from collections import Counter
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from knox.models import AuthToken

from backoffice.loadgen import (
    MixError,
    Outcome,
    mix_parse,
    mix_sequence,
    outcome_of,
    percentile,
)
from orders.models import OrderSummary
from tests.factories import make_product, make_user


def place_orders(*args: str) -> str:
    out = StringIO()
    call_command("place_orders", *args, stdout=out)
    return out.getvalue()


class TestMix:
    def test_a_mix_is_read_into_weights(self) -> None:
        assert mix_parse("visa=90, declined=5,flaky=5") == {"visa": 90, "declined": 5, "flaky": 5}

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("visa=90,amex=10", "unknown kind 'amex'"),
            ("visa", "is not KIND=WEIGHT"),
            ("visa=ninety", "must be a whole number"),
            ("visa=-1,flaky=2", "must not be negative"),
            ("visa=0,declined=0", "at least one weight above 0"),
            ("", "at least one weight above 0"),
            ("visa=1,visa=2", "given twice"),
        ],
    )
    def test_a_bad_mix_is_named(self, text: str, says: str) -> None:
        with pytest.raises(MixError, match=says):
            mix_parse(text)

    def test_a_cycle_holds_the_mix_exactly_in_a_seeded_order(self) -> None:
        cycle = mix_sequence({"visa": 6, "declined": 3, "flaky": 1}, seed=3)
        assert Counter(cycle) == {"visa": 6, "declined": 3, "flaky": 1}
        assert cycle == mix_sequence({"visa": 6, "declined": 3, "flaky": 1}, seed=3)

    def test_the_percentiles_are_nearest_rank(self) -> None:
        values = [float(n) for n in range(1, 101)]
        assert percentile(values, 0.50) == 50.0
        assert percentile(values, 0.99) == 99.0
        assert percentile([7.0], 0.99) == 7.0
        assert percentile([], 0.5) == 0.0

    @pytest.mark.parametrize(
        ("status", "reason", "saga", "outcome"),
        [
            ("CONFIRMED", None, "COMPLETED", Outcome("o", "confirmed")),
            ("CANCELLED", "out_of_stock", "COMPENSATED", Outcome("o", "cancelled", "out_of_stock")),
            ("PENDING", None, "COMPENSATION_FAILED", Outcome("o", "waiting_for_operator")),
            ("PENDING", None, "RUNNING", None),
            # Confirmed, but a cancellation is under way: not settled yet.
            ("CONFIRMED", None, "RUNNING", None),
        ],
    )
    def test_an_order_settles_when_its_newest_saga_rests(
        self, status: str, reason: str | None, saga: str, outcome: Outcome | None
    ) -> None:
        order = {"id": "o", "status": status, "cancellation_reason": reason}
        assert outcome_of({**order, "saga": {"status": saga}}) == outcome

    def test_the_command_refuses_a_bad_mix_before_placing_anything(self) -> None:
        with pytest.raises(CommandError, match=r"--mix: unknown kind 'amex'"):
            place_orders("--count", "3", "--mix", "visa=1,amex=2", "--token", "t")


def test_a_server_that_does_not_answer_makes_the_command_fail() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = StringIO()
    with pytest.raises(CommandError, match=r"2 order\(s\) not placed"):
        call_command(
            "place_orders", "--url", f"http://127.0.0.1:{port}", "--token", "t", "--count", "2",
            "--sku", "ANY", "--rate", "0", "--place-timeout", "1", "--no-follow", stdout=out,
        )  # fmt: skip
    assert "placed: 0 of 2" in out.getvalue()
    assert "errors: 2" in out.getvalue()
    assert "no order placed in 1s" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_orders_the_server_refuses_make_the_command_fail(live_server: Any) -> None:
    make_user()
    user = make_user()
    with pytest.raises(CommandError, match=r"3 order\(s\) not placed, 0 not settled"):
        place_orders(
            "--url", live_server.url, "--user", user.username, "--count", "3",
            "--sku", "NO-SUCH-SKU", "--no-follow", "--rate", "0",
        )  # fmt: skip
    assert not OrderSummary.objects.exists()
    assert not AuthToken.objects.filter(user=user).exists()


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_orders_are_placed_over_http_and_followed_to_their_outcome(
    live_server: Any, live_worker: object
) -> None:
    make_product(sku="LOAD-1", stock=100)
    make_product(sku="LOAD-2", stock=100)
    user = make_user()
    _, token = AuthToken.objects.create(user=user)

    # Five cycles of four: ten approved, five declined, five flaky (approved on a retry).
    output = place_orders(
        "--url", live_server.url, "--token", token, "--count", "20", "--rate", "0",
        "--concurrency", "4", "--mix", "visa=2,declined=1,flaky=1", "--settle-timeout", "120",
    )  # fmt: skip

    orders = Counter(OrderSummary.objects.values_list("status", "cancellation_reason"))
    assert orders == {("CONFIRMED", ""): 15, ("CANCELLED", "payment_declined"): 5}
    assert "placed: 20 of 20" in output
    assert "confirmed: 15\n" in output
    assert "cancelled: 5 (payment_declined 5)\n" in output
    assert "unsettled at the end: 0\n" in output
    assert "errors: 0\n" in output
    assert "p50 " in output and "p99 " in output
    # The progress bars, drawn once at the end when the output is not a terminal.
    assert "20/20" in output
    assert output.rstrip().endswith("every order placed and settled")
