"""The simulated card processor: test tokens, its signed references to cards, idempotency by
key, refunds, persistent state."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from django.core import signing

from payments.gateway import (
    CardDeclined,
    GatewayCharge,
    GatewayRequestError,
    GatewayTransientError,
    get_gateway,
)
from payments.models import (
    SimulatedCardBehaviour,
    SimulatedCharge,
    SimulatedChargeOutcome,
    SimulatedRefund,
    SimulatedTransientFailure,
)
from payments.simulated import SimulatedCard, SimulatedGateway, open_card, seal_card
from payments.tokens import token_fingerprint

pytestmark = pytest.mark.django_db

gateway = SimulatedGateway()

#: The payment method each token was vaulted as in the running test (one card per token, as
#: one order's saga keeps one reference for all its charge attempts).
_methods: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _fresh_methods() -> None:
    _methods.clear()


def method_of(token: str) -> str:
    if token not in _methods:
        _methods[token] = gateway.create_payment_method(token=token)
    return _methods[token]


def charge(token: str, key: str | None = None, amount: str = "25.00") -> GatewayCharge:
    return gateway.charge(
        amount=Decimal(amount),
        currency="EUR",
        payment_method=method_of(token),
        idempotency_key=key or str(uuid4()),
    )


def test_get_gateway_builds_the_simulated_gateway_by_default() -> None:
    assert isinstance(get_gateway(), SimulatedGateway)


def test_tok_visa_approves_and_the_processor_keeps_the_charge() -> None:
    result = charge("tok_visa", key="k1")

    assert result.reference.startswith("ch_sim_")
    assert (result.amount, result.currency) == (Decimal("25.00"), "EUR")
    row = SimulatedCharge.objects.get(reference=result.reference)
    assert (row.idempotency_key, row.outcome, row.fingerprint, row.behaviour) == (
        "k1",
        SimulatedChargeOutcome.APPROVED,
        token_fingerprint("tok_visa"),
        SimulatedCardBehaviour.APPROVE,
    )


@pytest.mark.parametrize(
    ("token", "behaviour", "code", "message"),
    [
        ("tok_visa", SimulatedCardBehaviour.APPROVE, "", ""),
        ("tok_flaky", SimulatedCardBehaviour.FLAKY, "", ""),
        ("tok_lostResponse", SimulatedCardBehaviour.LOSE_RESPONSE, "", ""),
        (
            "tok_chargeDeclined",
            SimulatedCardBehaviour.DECLINE,
            "card_declined",
            "Your card was declined.",
        ),
        (
            "tok_unheard_of",
            SimulatedCardBehaviour.DECLINE,
            "invalid_token",
            "The payment token is not valid.",
        ),
    ],
)
def test_a_vaulted_card_keeps_the_tokens_fingerprint_and_behaviour_not_the_token(
    token: str,
    behaviour: SimulatedCardBehaviour,
    code: str,
    message: str,
    django_assert_num_queries: Any,
) -> None:
    # Vaulting is the processor's computation: nothing is read or written here.
    with django_assert_num_queries(0):
        reference = gateway.create_payment_method(token=token)

    assert reference.startswith("pm_sim_")
    assert open_card(reference) == SimulatedCard(token_fingerprint(token), behaviour, code, message)
    assert token not in reference
    assert token_fingerprint(token) != token_fingerprint(token + "x")


def _sealed(
    fields: object, *, key: str | None = None, salt: str = "payments.simulated.vault"
) -> str:
    """Sign ``fields`` as the vault does, or under another key or salt."""
    return "pm_sim_" + signing.Signer(key=key, salt=salt).sign_object(fields, compress=False)


def _altered(reference: str) -> str:
    """Change one character of the reference's signed payload."""
    at = len("pm_sim_") + 2
    return reference[:at] + ("A" if reference[at] != "A" else "B") + reference[at + 1 :]


_CARD_FIELDS = ["f" * 64, "APPROVE", "", ""]


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param(lambda: "pm_sim_unknown", id="unknown"),
        pytest.param(lambda: "", id="empty"),
        pytest.param(lambda: _altered(_sealed(_CARD_FIELDS)), id="altered"),
        pytest.param(
            lambda: _sealed(_CARD_FIELDS, key="another processor's key"), id="foreign-key"
        ),
        pytest.param(lambda: _sealed(_CARD_FIELDS, salt="another.use"), id="foreign-salt"),
        pytest.param(lambda: _sealed(_CARD_FIELDS).removeprefix("pm_sim_"), id="unprefixed"),
        pytest.param(lambda: _sealed(["f" * 64, "STEAL"]), id="signed-but-malformed"),
        pytest.param(lambda: _sealed({"behaviour": "APPROVE"}), id="signed-not-a-list"),
    ],
)
def test_a_charge_naming_an_unknown_payment_method_is_refused_and_records_nothing(
    reference: Callable[[], str],
) -> None:
    # Unaltered, the helper's signature is the vault's own: what is refused is the change.
    assert _sealed(_CARD_FIELDS) == seal_card(
        SimulatedCard("f" * 64, SimulatedCardBehaviour.APPROVE)
    )

    with pytest.raises(GatewayRequestError, match="no such payment method"):
        gateway.charge(
            amount=Decimal("5.00"),
            currency="EUR",
            payment_method=reference(),
            idempotency_key="k1",
        )

    assert not SimulatedCharge.objects.exists()


def test_the_same_key_with_another_card_is_refused() -> None:
    charge("tok_visa", key="k1")

    with pytest.raises(GatewayRequestError, match="different charge"):
        gateway.charge(
            amount=Decimal("25.00"),
            currency="EUR",
            payment_method=gateway.create_payment_method(token="tok_chargeDeclined"),
            idempotency_key="k1",
        )


def test_the_same_card_vaulted_again_replays_its_charge() -> None:
    first = charge("tok_visa", key="k1")

    again = gateway.charge(
        amount=Decimal("25.00"),
        currency="EUR",
        payment_method=gateway.create_payment_method(token="tok_visa"),
        idempotency_key="k1",
    )

    assert again == first
    assert SimulatedCharge.objects.count() == 1


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_unheard_of", "invalid_token"),
        ("", "invalid_token"),
    ],
)
def test_declining_tokens_decline_with_their_code(token: str, code: str) -> None:
    with pytest.raises(CardDeclined) as raised:
        charge(token, key="k1")

    assert raised.value.code == code
    assert raised.value.message
    assert SimulatedCharge.objects.get(idempotency_key="k1").decline_code == code


def test_a_decline_is_final_for_its_key() -> None:
    with pytest.raises(CardDeclined):
        charge("tok_chargeDeclined", key="k1")

    with pytest.raises(CardDeclined) as again:
        charge("tok_chargeDeclined", key="k1")

    assert again.value.code == "card_declined"
    assert SimulatedCharge.objects.count() == 1


def test_tok_flaky_fails_transiently_twice_then_approves() -> None:
    with pytest.raises(GatewayTransientError):
        charge("tok_flaky", key="k1")
    with pytest.raises(GatewayTransientError):
        charge("tok_flaky", key="k1")
    assert not SimulatedCharge.objects.exists()

    approved = charge("tok_flaky", key="k1")
    again = charge("tok_flaky", key="k1")

    assert again == approved
    assert SimulatedCharge.objects.get().reference == approved.reference
    assert SimulatedTransientFailure.objects.get(idempotency_key="k1").failures == 2


def test_tok_flaky_counts_failures_per_key() -> None:
    with pytest.raises(GatewayTransientError):
        charge("tok_flaky", key="k1")
    with pytest.raises(GatewayTransientError):
        charge("tok_flaky", key="k1")

    # Another payment (another key) gets its own two failures.
    with pytest.raises(GatewayTransientError):
        charge("tok_flaky", key="k2")
    assert charge("tok_flaky", key="k1").reference
    with pytest.raises(GatewayTransientError):
        charge("tok_flaky", key="k2")
    assert charge("tok_flaky", key="k2").reference
    assert SimulatedCharge.objects.count() == 2


def test_tok_flaky_failures_persist_across_gateway_instances() -> None:
    method = SimulatedGateway().create_payment_method(token="tok_flaky")
    for _ in range(2):
        with pytest.raises(GatewayTransientError):
            SimulatedGateway().charge(
                amount=Decimal("5.00"), currency="EUR", payment_method=method, idempotency_key="k1"
            )

    approved = SimulatedGateway().charge(
        amount=Decimal("5.00"), currency="EUR", payment_method=method, idempotency_key="k1"
    )

    assert approved.reference


def test_the_same_key_twice_charges_once_and_returns_the_first_result() -> None:
    first = charge("tok_visa", key="k1")

    second = charge("tok_visa", key="k1")

    assert second == first
    assert SimulatedCharge.objects.count() == 1


def test_a_key_reused_for_another_charge_is_refused() -> None:
    charge("tok_visa", key="k1", amount="25.00")

    with pytest.raises(GatewayRequestError):
        charge("tok_visa", key="k1", amount="30.00")

    assert SimulatedCharge.objects.count() == 1


def test_refund_pays_back_a_charge_once_per_key() -> None:
    charged = charge("tok_visa", amount="25.00")

    refund = gateway.refund(
        charge_reference=charged.reference,
        amount=Decimal("25.00"),
        currency="EUR",
        idempotency_key="r1",
    )
    again = gateway.refund(
        charge_reference=charged.reference,
        amount=Decimal("25.00"),
        currency="EUR",
        idempotency_key="r1",
    )

    assert refund.reference.startswith("re_sim_")
    assert refund.charge_reference == charged.reference
    assert again == refund
    assert SimulatedRefund.objects.count() == 1


def test_partial_refunds_add_up_to_the_charge_and_no_further() -> None:
    charged = charge("tok_visa", amount="25.00")
    for key, amount in (("r1", "10.00"), ("r2", "15.00")):
        gateway.refund(
            charge_reference=charged.reference,
            amount=Decimal(amount),
            currency="EUR",
            idempotency_key=key,
        )

    with pytest.raises(GatewayRequestError, match="exceeds"):
        gateway.refund(
            charge_reference=charged.reference,
            amount=Decimal("0.01"),
            currency="EUR",
            idempotency_key="r3",
        )

    assert SimulatedRefund.objects.count() == 2


def test_refund_of_more_than_charged_is_refused() -> None:
    charged = charge("tok_visa", amount="25.00")

    with pytest.raises(GatewayRequestError, match="exceeds"):
        gateway.refund(
            charge_reference=charged.reference,
            amount=Decimal("25.01"),
            currency="EUR",
            idempotency_key="r1",
        )

    assert not SimulatedRefund.objects.exists()


def test_refund_of_an_unknown_or_declined_charge_is_refused() -> None:
    with pytest.raises(CardDeclined):
        charge("tok_chargeDeclined", key="k1")
    declined = SimulatedCharge.objects.get(idempotency_key="k1")

    with pytest.raises(GatewayRequestError, match="no such charge"):
        gateway.refund(
            charge_reference="ch_sim_nope",
            amount=Decimal("1.00"),
            currency="EUR",
            idempotency_key="r1",
        )
    with pytest.raises(GatewayRequestError, match="declined"):
        gateway.refund(
            charge_reference=declined.reference,
            amount=Decimal("1.00"),
            currency="EUR",
            idempotency_key="r2",
        )

    assert not SimulatedRefund.objects.exists()


def test_a_card_number_sent_as_a_token_is_not_stored() -> None:
    with pytest.raises(CardDeclined) as raised:
        charge("4242 4242 4242 4242", key="k1")

    assert raised.value.code == "invalid_token"
    row = SimulatedCharge.objects.get(idempotency_key="k1")
    stored = [str(v) for v in vars(row).values()] + [method_of("4242 4242 4242 4242")]
    assert not any("4242" in value for value in stored)


def test_tok_lost_response_takes_the_money_and_loses_every_answer_for_its_key() -> None:
    for _ in range(3):
        with pytest.raises(GatewayTransientError, match="answer is lost"):
            charge("tok_lostResponse", key="k1")

    # One charge, approved, however often the key was sent.
    row = SimulatedCharge.objects.get(idempotency_key="k1")
    assert (row.outcome, row.amount) == (SimulatedChargeOutcome.APPROVED, Decimal("25.00"))
    assert SimulatedCharge.objects.count() == 1


def test_find_charge_tells_what_a_key_did_even_when_its_answer_was_lost() -> None:
    with pytest.raises(GatewayTransientError):
        charge("tok_lostResponse", key="lost")
    with pytest.raises(CardDeclined):
        charge("tok_chargeDeclined", key="declined")
    approved = charge("tok_visa", key="approved")

    found = gateway.find_charge(idempotency_key="lost")

    assert found is not None
    assert found == GatewayCharge(
        reference=SimulatedCharge.objects.get(idempotency_key="lost").reference,
        amount=Decimal("25.00"),
        currency="EUR",
    )
    assert gateway.find_charge(idempotency_key="approved") == approved
    # No money moved under these keys: a decline, and a key the processor never saw.
    assert gateway.find_charge(idempotency_key="declined") is None
    assert gateway.find_charge(idempotency_key="never-sent") is None


def test_a_lost_answer_charge_can_be_refunded_by_its_reference() -> None:
    with pytest.raises(GatewayTransientError):
        charge("tok_lostResponse", key="lost")
    found = gateway.find_charge(idempotency_key="lost")
    assert found is not None

    refund = gateway.refund(
        charge_reference=found.reference,
        amount=found.amount,
        currency=found.currency,
        idempotency_key="lost:refund",
    )

    assert (refund.charge_reference, refund.amount) == (found.reference, Decimal("25.00"))
