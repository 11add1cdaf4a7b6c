"""The payment services on real PostgreSQL, against the simulated processor."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from payments.errors import (
    IdempotencyKeyConflict,
    InvalidPaymentAmount,
    OrderAlreadyPaid,
    PaymentChargeRejected,
    PaymentDeclined,
    PaymentGatewayUnavailable,
    PaymentRefundInFlight,
)
from payments.gateway import CardDeclined
from payments.models import Payment, PaymentStatus, Refund, SimulatedCharge, SimulatedRefund
from payments.selectors import payment_totals_for_order, payments_for_order
from payments.services import (
    PaymentResult,
    RefundOutcome,
    payment_charge,
    payment_method_create,
    payment_refund,
)
from payments.simulated import SimulatedGateway

pytestmark = pytest.mark.django_db

AMOUNT = Decimal("42.50")


#: The payment method each token was vaulted as in the running test (one card per token, as
#: one order's saga keeps one reference for all its charge attempts).
_methods: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _fresh_methods() -> None:
    _methods.clear()


def method_of(token: str) -> str:
    if token not in _methods:
        _methods[token] = payment_method_create(token=token)
    return _methods[token]


def charge(
    order_id: UUID, token: str = "tok_visa", key: str | None = None, amount: Decimal = AMOUNT
) -> PaymentResult:
    return payment_charge(
        order_id=order_id,
        amount=amount,
        currency="EUR",
        payment_method=method_of(token),
        idempotency_key=key or f"{uuid4()}:charge_payment:action",
    )


# --- charge ----------------------------------------------------------------------------------


def test_charge_with_tok_visa_records_a_charged_payment() -> None:
    order_id = uuid4()

    result = charge(order_id, key="saga:charge_payment:action")

    payment = Payment.objects.get(pk=result.payment_id)
    assert result.status == PaymentStatus.CHARGED
    assert (result.order_id, result.amount, result.currency) == (order_id, AMOUNT, "EUR")
    assert (payment.status, payment.idempotency_key) == (
        PaymentStatus.CHARGED,
        "saga:charge_payment:action",
    )
    assert payment.gateway_reference == result.gateway_reference
    assert SimulatedCharge.objects.get().reference == result.gateway_reference


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_nonsense", "invalid_token"),
    ],
)
def test_a_declined_card_is_recorded_and_raised(token: str, code: str) -> None:
    order_id = uuid4()

    with pytest.raises(PaymentDeclined) as raised:
        charge(order_id, token=token, key="k1")

    payment = Payment.objects.get(idempotency_key="k1")
    assert raised.value.code == code
    assert raised.value.message
    assert raised.value.payment_id == payment.pk
    assert (payment.status, payment.decline_code, payment.order_id) == (
        PaymentStatus.DECLINED,
        code,
        order_id,
    )
    assert payment.gateway_reference == ""


def test_a_declined_charge_repeated_with_its_key_declines_again_without_a_new_row() -> None:
    order_id = uuid4()
    with pytest.raises(PaymentDeclined):
        charge(order_id, token="tok_chargeDeclined", key="k1")

    with pytest.raises(PaymentDeclined) as again:
        charge(order_id, token="tok_chargeDeclined", key="k1")

    assert again.value.code == "card_declined"
    assert Payment.objects.count() == 1
    assert SimulatedCharge.objects.count() == 1


def test_tok_flaky_is_unavailable_twice_recording_nothing_then_charges() -> None:
    order_id = uuid4()
    for _ in range(2):
        with pytest.raises(PaymentGatewayUnavailable):
            charge(order_id, token="tok_flaky", key="k1")
        assert not Payment.objects.exists()

    result = charge(order_id, token="tok_flaky", key="k1")

    assert result.status == PaymentStatus.CHARGED
    assert Payment.objects.get().pk == result.payment_id
    assert SimulatedCharge.objects.count() == 1


def test_tok_flaky_failures_are_counted_per_key() -> None:
    first, second = uuid4(), uuid4()
    for _ in range(2):
        with pytest.raises(PaymentGatewayUnavailable):
            charge(first, token="tok_flaky", key="k1")

    with pytest.raises(PaymentGatewayUnavailable):
        charge(second, token="tok_flaky", key="k2")
    assert charge(first, token="tok_flaky", key="k1").status == PaymentStatus.CHARGED


def test_the_same_key_twice_charges_once() -> None:
    order_id = uuid4()
    first = charge(order_id, key="k1")

    second = charge(order_id, key="k1")

    assert second == first
    assert Payment.objects.count() == 1
    assert SimulatedCharge.objects.count() == 1


def test_a_charge_answered_but_not_recorded_is_recorded_on_the_retry_without_a_second_charge() -> (
    None
):
    # The first attempt reached the processor, then its worker died before recording.
    order_id = uuid4()
    answered = SimulatedGateway().charge(
        amount=AMOUNT, currency="EUR", payment_method=method_of("tok_visa"), idempotency_key="k1"
    )

    result = charge(order_id, key="k1")

    assert result.gateway_reference == answered.reference
    assert SimulatedCharge.objects.count() == 1


def test_a_second_key_for_an_order_already_charged_is_refused_before_the_gateway() -> None:
    order_id = uuid4()
    first = charge(order_id, key="k1")

    with pytest.raises(OrderAlreadyPaid) as raised:
        charge(order_id, key="k2")

    assert raised.value.payment_id == first.payment_id
    assert SimulatedCharge.objects.count() == 1


def test_a_charge_may_follow_a_declined_one_for_the_same_order() -> None:
    order_id = uuid4()
    with pytest.raises(PaymentDeclined):
        charge(order_id, token="tok_chargeDeclined", key="k1")

    result = charge(order_id, key="k2")

    assert result.status == PaymentStatus.CHARGED
    assert list(payments_for_order(order_id=order_id).values_list("status", flat=True)) == [
        PaymentStatus.DECLINED,
        PaymentStatus.CHARGED,
    ]


def test_a_key_reused_for_another_amount_or_order_is_refused() -> None:
    order_id = uuid4()
    charge(order_id, key="k1")

    with pytest.raises(IdempotencyKeyConflict):
        charge(order_id, key="k1", amount=Decimal("1.00"))
    with pytest.raises(IdempotencyKeyConflict):
        charge(uuid4(), key="k1")

    assert Payment.objects.count() == 1


def test_a_charge_the_processor_refuses_outright_is_rejected_and_not_recorded() -> None:
    # The processor already holds key k1 for another card: its idempotency check refuses.
    with pytest.raises(CardDeclined):
        SimulatedGateway().charge(
            amount=AMOUNT,
            currency="EUR",
            payment_method=method_of("tok_chargeDeclined"),
            idempotency_key="k1",
        )

    with pytest.raises(PaymentChargeRejected):
        charge(uuid4(), token="tok_visa", key="k1")

    assert not Payment.objects.filter(idempotency_key="k1").exists()


@pytest.mark.parametrize("amount", ["0", "-5.00", "1.005"])
def test_an_amount_not_positive_or_not_in_cents_is_refused(amount: str) -> None:
    with pytest.raises(InvalidPaymentAmount):
        charge(uuid4(), amount=Decimal(amount))

    assert not SimulatedCharge.objects.exists()


def test_the_gateway_is_never_called_inside_a_transaction() -> None:
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        charge(uuid4())

    assert not SimulatedCharge.objects.exists()


def test_a_payment_keeps_no_token_only_what_a_refund_needs() -> None:
    charged = charge(uuid4(), token="tok_visa", key="k1")
    with pytest.raises(PaymentDeclined):
        charge(uuid4(), token="4111-1111-1111-1111", key="k2")

    columns = {field.attname for field in Payment._meta.concrete_fields}
    assert not any("token" in column for column in columns)
    for payment in Payment.objects.all():
        values = " ".join(str(getattr(payment, column)) for column in columns)
        assert "tok_visa" not in values and "4111" not in values
    assert Payment.objects.get(idempotency_key="k1").gateway_reference == (
        charged.gateway_reference
    )


def test_the_database_allows_one_charged_payment_per_order() -> None:
    order_id, now = uuid4(), timezone.now()
    charge(order_id)

    with pytest.raises(IntegrityError, match="one_settled_per_order"), transaction.atomic():
        Payment.objects.create(
            order_id=order_id,
            idempotency_key="other",
            amount=AMOUNT,
            currency="EUR",
            status=PaymentStatus.REFUNDED,
            gateway_reference="ch_other",
            refunded_at=now,
            created_at=now,
            updated_at=now,
        )


# --- refund ----------------------------------------------------------------------------------


def test_refund_pays_back_the_charged_payment_in_full() -> None:
    order_id = uuid4()
    charged = charge(order_id)

    result = payment_refund(order_id=order_id, idempotency_key="r1")

    payment = Payment.objects.get(pk=charged.payment_id)
    refund = Refund.objects.get()
    assert result.outcome is RefundOutcome.REFUNDED and result.refunded
    assert (result.payment_id, result.refund_id, result.amount) == (
        charged.payment_id,
        refund.pk,
        AMOUNT,
    )
    assert payment.status == PaymentStatus.REFUNDED and payment.refunded_at is not None
    assert (refund.idempotency_key, refund.amount) == ("r1", AMOUNT)
    gateway_refund = SimulatedRefund.objects.get()
    assert gateway_refund.reference == refund.gateway_reference == result.gateway_reference
    assert gateway_refund.charge.reference == charged.gateway_reference


def test_refund_repeated_with_its_key_returns_the_same_refund_and_refunds_once() -> None:
    order_id = uuid4()
    charge(order_id)
    first = payment_refund(order_id=order_id, idempotency_key="r1")

    again = payment_refund(order_id=order_id, idempotency_key="r1")

    assert again == first
    assert Refund.objects.count() == 1
    assert SimulatedRefund.objects.count() == 1


def test_refund_under_another_key_says_already_refunded_and_refunds_nothing() -> None:
    order_id = uuid4()
    charge(order_id)
    first = payment_refund(order_id=order_id, idempotency_key="r1")

    other = payment_refund(order_id=order_id, idempotency_key="r2")

    assert other.outcome is RefundOutcome.ALREADY_REFUNDED and other.refunded
    assert other.refund_id == first.refund_id
    assert SimulatedRefund.objects.count() == 1


def test_refund_with_nothing_charged_is_a_no_op_that_says_so() -> None:
    order_id = uuid4()

    result = payment_refund(order_id=order_id, idempotency_key="r1")

    assert result.outcome is RefundOutcome.NOTHING_TO_REFUND and not result.refunded
    assert (result.payment_id, result.refund_id) == (None, None)
    assert not Refund.objects.exists()
    assert not SimulatedRefund.objects.exists()


def test_refund_after_a_decline_only_has_nothing_to_refund() -> None:
    order_id = uuid4()
    with pytest.raises(PaymentDeclined):
        charge(order_id, token="tok_chargeDeclined")

    result = payment_refund(order_id=order_id, idempotency_key="r1")

    assert result.outcome is RefundOutcome.NOTHING_TO_REFUND
    assert Payment.objects.get().status == PaymentStatus.DECLINED


def test_a_charge_whose_answer_was_lost_is_found_by_its_key_recorded_and_refunded() -> None:
    order_id = uuid4()
    key = f"{order_id}:charge_payment:action"
    with pytest.raises(PaymentGatewayUnavailable):
        charge(order_id, token="tok_lostResponse", key=key)
    assert not Payment.objects.exists()  # the money is gone, nothing of ours says so
    taken = SimulatedCharge.objects.get(idempotency_key=key)

    result = payment_refund(order_id=order_id, idempotency_key="r1", charge_idempotency_key=key)
    again = payment_refund(order_id=order_id, idempotency_key="r1", charge_idempotency_key=key)

    assert result.outcome is RefundOutcome.REFUNDED
    assert again == result
    payment = Payment.objects.get()
    assert (payment.idempotency_key, payment.status, payment.gateway_reference) == (
        key,
        PaymentStatus.REFUNDED,
        taken.reference,
    )
    assert (payment.amount, payment.currency) == (AMOUNT, "EUR")
    assert SimulatedRefund.objects.get().charge == taken
    assert payment_totals_for_order(order_id=order_id) == (AMOUNT, AMOUNT)


def test_a_charge_key_the_gateway_took_nothing_under_leaves_nothing_to_refund() -> None:
    order_id = uuid4()
    declined = f"{order_id}:declined"
    with pytest.raises(PaymentDeclined):
        charge(order_id, token="tok_chargeDeclined", key=declined)

    for key in (declined, f"{order_id}:never-sent"):
        result = payment_refund(order_id=order_id, idempotency_key="r1", charge_idempotency_key=key)
        assert result.outcome is RefundOutcome.NOTHING_TO_REFUND

    assert Payment.objects.get().status == PaymentStatus.DECLINED
    assert not SimulatedRefund.objects.exists()


def test_a_lookup_that_times_out_is_unavailable_and_records_nothing(settings) -> None:
    order_id = uuid4()
    key = f"{order_id}:charge_payment:action"
    with pytest.raises(PaymentGatewayUnavailable):
        charge(order_id, token="tok_lostResponse", key=key)
    settings.PAYMENT_GATEWAY = "payments.tests.gateways.LookupTimeoutGateway"

    with pytest.raises(PaymentGatewayUnavailable):
        payment_refund(order_id=order_id, idempotency_key="r1", charge_idempotency_key=key)

    assert not Payment.objects.exists()
    settings.PAYMENT_GATEWAY = "payments.simulated.SimulatedGateway"
    assert payment_refund(
        order_id=order_id, idempotency_key="r1", charge_idempotency_key=key
    ).outcome is (RefundOutcome.REFUNDED)


def test_a_charge_already_recorded_is_refunded_not_recorded_twice() -> None:
    order_id = uuid4()
    charged = charge(order_id, key="k1")

    result = payment_refund(order_id=order_id, idempotency_key="r1", charge_idempotency_key="k1")

    assert result.payment_id == charged.payment_id
    assert Payment.objects.count() == 1
    assert SimulatedRefund.objects.count() == 1


def test_a_refund_timeout_is_unavailable_and_records_nothing(settings) -> None:
    order_id = uuid4()
    charge(order_id)
    settings.PAYMENT_GATEWAY = "payments.tests.gateways.RefundTimeoutGateway"

    with pytest.raises(PaymentGatewayUnavailable):
        payment_refund(order_id=order_id, idempotency_key="r1")

    assert Payment.objects.get().status == PaymentStatus.CHARGED
    assert not Refund.objects.exists()
    settings.PAYMENT_GATEWAY = "payments.simulated.SimulatedGateway"
    assert payment_refund(order_id=order_id, idempotency_key="r1").outcome is (
        RefundOutcome.REFUNDED
    )


def test_a_refund_the_processor_made_but_we_did_not_record_yet_is_retried_not_repeated() -> None:
    order_id = uuid4()
    charged = charge(order_id)
    # A refund under key r1 reached the processor; its worker has not recorded it (yet).
    SimulatedGateway().refund(
        charge_reference=charged.gateway_reference,
        amount=AMOUNT,
        currency="EUR",
        idempotency_key="r1",
    )

    with pytest.raises(PaymentRefundInFlight) as raised:
        payment_refund(order_id=order_id, idempotency_key="r2")
    assert isinstance(raised.value, PaymentGatewayUnavailable)  # transient: retried
    recorded = payment_refund(order_id=order_id, idempotency_key="r1")
    retried = payment_refund(order_id=order_id, idempotency_key="r2")

    assert recorded.outcome is RefundOutcome.REFUNDED
    assert retried.outcome is RefundOutcome.ALREADY_REFUNDED
    assert retried.refund_id == recorded.refund_id
    assert SimulatedRefund.objects.count() == 1
    assert Payment.objects.get().status == PaymentStatus.REFUNDED


def test_a_refund_key_reused_for_another_order_is_refused() -> None:
    first, second = uuid4(), uuid4()
    charge(first)
    charge(second)
    payment_refund(order_id=first, idempotency_key="r1")

    with pytest.raises(IdempotencyKeyConflict):
        payment_refund(order_id=second, idempotency_key="r1")

    assert Payment.objects.get(order_id=second).status == PaymentStatus.CHARGED


# --- selectors -------------------------------------------------------------------------------


def test_totals_count_money_taken_and_paid_back() -> None:
    order_id = uuid4()
    assert payment_totals_for_order(order_id=order_id) == (Decimal("0.00"), Decimal("0.00"))
    with pytest.raises(PaymentDeclined):
        charge(order_id, token="tok_chargeDeclined")
    assert payment_totals_for_order(order_id=order_id) == (Decimal("0.00"), Decimal("0.00"))

    charge(order_id)
    assert payment_totals_for_order(order_id=order_id) == (AMOUNT, Decimal("0.00"))

    payment_refund(order_id=order_id, idempotency_key="r1")
    assert payment_totals_for_order(order_id=order_id) == (AMOUNT, AMOUNT)


def test_payments_for_order_lists_only_that_orders_payments_with_refunds() -> None:
    order_id = uuid4()
    charge(order_id)
    charge(uuid4())
    payment_refund(order_id=order_id, idempotency_key="r1")

    payments = list(payments_for_order(order_id=order_id))

    assert [p.order_id for p in payments] == [order_id]
    assert [r.idempotency_key for r in payments[0].refunds.all()] == ["r1"]


# --- admin -----------------------------------------------------------------------------------


def test_admin_shows_payments_and_gateway_records_read_only(admin_client) -> None:
    order_id = uuid4()
    result = charge(order_id)
    payment_refund(order_id=order_id, idempotency_key="r1")

    detail = admin_client.get(f"/admin/payments/payment/{result.payment_id}/change/")

    assert detail.status_code == 200
    assert "r1" in detail.content.decode()
    assert admin_client.get("/admin/payments/payment/").status_code == 200
    assert admin_client.get("/admin/payments/payment/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/payments/payment/{result.payment_id}/delete/", {"post": "yes"})
    ).status_code == 403
    assert admin_client.get("/admin/payments/payment/", {"q": "not-a-uuid"}).status_code == 200
    for model in ("simulatedcharge", "simulatedrefund", "simulatedtransientfailure"):
        assert admin_client.get(f"/admin/payments/{model}/").status_code == 200
        assert admin_client.get(f"/admin/payments/{model}/add/").status_code == 403
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
