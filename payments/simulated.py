"""Simulate a card processor, with its state in its own tables, for demos and tests offline.

It follows the test-token convention of card processors:

==========================================  ==================================================
``tok_visa``                                approves
``tok_chargeDeclined``                      declines: ``card_declined``
``tok_chargeDeclinedInsufficientFunds``     declines: ``insufficient_funds``
``tok_flaky``                               fails transiently twice per idempotency key, then
                                            approves (the count is stored, so it survives
                                            worker restarts)
``tok_lostResponse``                        approves, and loses the answer: the charge is
                                            recorded, then every call with its idempotency
                                            key times out (``GatewayTransientError``); only
                                            ``find_charge`` tells that the money was taken
anything else                               declines: ``invalid_token``
==========================================  ==================================================

A token is vaulted first (``create_payment_method``, when the order is placed) and charges name
the card by the processor's reference. The simulated processor keeps no table of cards: the
reference itself carries what it needs later, the token's keyed fingerprint and the behaviour
above, signed by the processor (``django.core.signing`` under the secret key, its own salt),
so vaulting is a computation, with no database write, and a reference altered or made
elsewhere is refused like an unknown one. A signature, not encryption: nothing in it is
secret (the fingerprint is a keyed digest the processor's books keep anyway, the behaviour
is what the token's name says), it only has to be the processor's own. The processor's
charges keep the fingerprint and behaviour. The token itself is kept nowhere.

Like a real processor it is idempotent by key: a unique constraint on the key means the same
key twice, even at the same moment, makes one charge (or refund) and returns its first answer,
a decline included. A key reused with other parameters (amount, currency, another card: another
fingerprint) is refused; the same card under another reference is the same charge.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from payments.gateway import (
    CardDeclined,
    GatewayCharge,
    GatewayRefund,
    GatewayRequestError,
    GatewayTransientError,
    RefundExceedsCharge,
)
from payments.models import (
    SimulatedCardBehaviour,
    SimulatedCharge,
    SimulatedChargeOutcome,
    SimulatedRefund,
    SimulatedTransientFailure,
)
from payments.tokens import token_fingerprint

APPROVING_TOKENS = frozenset({"tok_visa"})
FLAKY_TOKEN = "tok_flaky"  # noqa: S105 (a test token's name, not a secret)
#: Transient failures ``tok_flaky`` gives each idempotency key before it approves.
FLAKY_FAILURES = 2
#: Approves, then times out on every call with the charge's key: the money moves, the answer
#: is lost (what a processor that took the money and then dropped the connection looks like).
LOST_RESPONSE_TOKEN = "tok_lostResponse"  # noqa: S105 (a test token's name, not a secret)
DECLINES: dict[str, tuple[str, str]] = {
    "tok_chargeDeclined": ("card_declined", "Your card was declined."),
    "tok_chargeDeclinedInsufficientFunds": (
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
}
INVALID_TOKEN = ("invalid_token", "The payment token is not valid.")
#: What starts the simulated processor's references to cards.
PAYMENT_METHOD_PREFIX = "pm_sim_"
#: Keeps the vault's signatures apart from any other use of the secret key.
_VAULT_SALT = "payments.simulated.vault"


@dataclass(frozen=True)
class SimulatedCard:
    """Describe a card the simulated processor vaulted: what its reference carries."""

    fingerprint: str
    behaviour: SimulatedCardBehaviour
    decline_code: str = ""
    decline_message: str = ""


class SimulatedGateway:
    """Charge and refund against the simulated processor's tables."""

    def create_payment_method(self, *, token: str) -> str:
        """Vault the card behind ``token``: its fingerprint and behaviour, not the token."""
        behaviour, code, message = card_behaviour(token)
        return seal_card(SimulatedCard(token_fingerprint(token), behaviour, code, message))

    def charge(
        self, *, amount: Decimal, currency: str, payment_method: str, idempotency_key: str
    ) -> GatewayCharge:
        """Charge, or answer as the first charge with this key did."""
        card = open_card(payment_method)
        found = SimulatedCharge.objects.filter(idempotency_key=idempotency_key).first()
        if found is not None:
            return _replay_charge(found, amount=amount, currency=currency, card=card)
        if card.behaviour == SimulatedCardBehaviour.FLAKY and _fail_transiently(idempotency_key):
            # The message names neither the token nor the reference: it reaches logs.
            raise GatewayTransientError("simulated timeout talking to the processor (flaky card)")
        if card.behaviour == SimulatedCardBehaviour.DECLINE:
            outcome = SimulatedChargeOutcome.DECLINED
            code, message = card.decline_code, card.decline_message
        else:
            outcome, code, message = SimulatedChargeOutcome.APPROVED, "", ""
        try:
            with transaction.atomic(durable=True):
                row = SimulatedCharge.objects.create(
                    reference=f"ch_sim_{secrets.token_hex(12)}",
                    idempotency_key=idempotency_key,
                    fingerprint=card.fingerprint,
                    behaviour=card.behaviour,
                    amount=amount,
                    currency=currency,
                    outcome=outcome,
                    decline_code=code,
                    decline_message=message,
                    created_at=timezone.now(),
                )
        except IntegrityError:
            # A concurrent call with the same key recorded its charge first: answer as it did.
            row = SimulatedCharge.objects.get(idempotency_key=idempotency_key)
        return _replay_charge(row, amount=amount, currency=currency, card=card)

    def find_charge(self, *, idempotency_key: str) -> GatewayCharge | None:
        """Return the approved charge made under the key, whatever its caller heard, or None."""
        row = SimulatedCharge.objects.filter(
            idempotency_key=idempotency_key, outcome=SimulatedChargeOutcome.APPROVED
        ).first()
        if row is None:
            return None
        return GatewayCharge(reference=row.reference, amount=row.amount, currency=row.currency)

    def refund(
        self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> GatewayRefund:
        """Refund part or all of an approved charge, or answer as the first refund with this key."""
        previous = (
            SimulatedRefund.objects.select_related("charge")
            .filter(idempotency_key=idempotency_key)
            .first()
        )
        if previous is not None:
            return _replay_refund(previous, charge_reference=charge_reference, amount=amount)
        if amount <= 0:
            raise GatewayRequestError("a refund amount must be positive")
        try:
            with transaction.atomic(durable=True):
                # The charge's row lock queues refunds of one charge, so their sum is checked
                # against the refunds committed before.
                charge = (
                    SimulatedCharge.objects.select_for_update()
                    .filter(reference=charge_reference)
                    .first()
                )
                if charge is None:
                    raise GatewayRequestError(f"no such charge: {charge_reference}")
                if charge.outcome != SimulatedChargeOutcome.APPROVED:
                    raise GatewayRequestError(f"charge {charge_reference} was declined")
                if currency != charge.currency:
                    raise GatewayRequestError(
                        f"charge {charge_reference} is in {charge.currency}, not {currency}"
                    )
                previous = SimulatedRefund.objects.filter(idempotency_key=idempotency_key).first()
                if previous is None:
                    refunded = charge.refunds.aggregate(total=Sum("amount"))["total"] or Decimal(0)
                    if refunded + amount > charge.amount:
                        raise RefundExceedsCharge(
                            f"refund of {amount} exceeds what is left of charge "
                            f"{charge_reference} ({charge.amount - refunded} of {charge.amount})"
                        )
                    previous = SimulatedRefund.objects.create(
                        reference=f"re_sim_{secrets.token_hex(12)}",
                        idempotency_key=idempotency_key,
                        charge=charge,
                        amount=amount,
                        currency=currency,
                        created_at=timezone.now(),
                    )
        except IntegrityError:
            previous = SimulatedRefund.objects.select_related("charge").get(
                idempotency_key=idempotency_key
            )
        return _replay_refund(previous, charge_reference=charge_reference, amount=amount)


def card_behaviour(token: str) -> tuple[SimulatedCardBehaviour, str, str]:
    """Say how charges of the card behind a test token are answered: the behaviour, and the
    decline code and message when it declines."""
    if token in APPROVING_TOKENS:
        return SimulatedCardBehaviour.APPROVE, "", ""
    if token == FLAKY_TOKEN:
        return SimulatedCardBehaviour.FLAKY, "", ""
    if token == LOST_RESPONSE_TOKEN:
        return SimulatedCardBehaviour.LOSE_RESPONSE, "", ""
    code, message = DECLINES.get(token, INVALID_TOKEN)
    return SimulatedCardBehaviour.DECLINE, code, message


def seal_card(card: SimulatedCard) -> str:
    """Return the processor's reference to ``card``: its fields, signed, after the prefix."""
    fields = [card.fingerprint, card.behaviour.value, card.decline_code, card.decline_message]
    # No timestamp (a card does not expire) and no compression (a short payload only grows).
    return PAYMENT_METHOD_PREFIX + signing.Signer(salt=_VAULT_SALT).sign_object(
        fields, compress=False
    )


def open_card(reference: str) -> SimulatedCard:
    """Read the card a reference of ``seal_card`` carries; raise ``GatewayRequestError`` for a
    reference that is not the processor's (unknown, altered, signed under another key)."""
    refused = GatewayRequestError("no such payment method (not a reference this processor made)")
    if not reference.startswith(PAYMENT_METHOD_PREFIX):
        raise refused
    try:
        fields = signing.Signer(salt=_VAULT_SALT).unsign_object(
            reference.removeprefix(PAYMENT_METHOD_PREFIX)
        )
    except (signing.BadSignature, ValueError):
        raise refused from None
    if (
        not isinstance(fields, list)
        or len(fields) != 4
        or not all(isinstance(field, str) for field in fields)
        or fields[1] not in SimulatedCardBehaviour.values
    ):
        raise refused
    fingerprint, behaviour, code, message = fields
    return SimulatedCard(fingerprint, SimulatedCardBehaviour(behaviour), code, message)


def _fail_transiently(idempotency_key: str) -> bool:
    """Count one more transient failure for the key, unless it has had its share."""
    with transaction.atomic(durable=True):
        counter, _ = SimulatedTransientFailure.objects.select_for_update().get_or_create(
            idempotency_key=idempotency_key, defaults={"updated_at": timezone.now()}
        )
        if counter.failures >= FLAKY_FAILURES:
            return False
        counter.failures += 1
        counter.updated_at = timezone.now()
        counter.save(update_fields=["failures", "updated_at"])
        return True


def _replay_charge(
    row: SimulatedCharge, *, amount: Decimal, currency: str, card: SimulatedCard
) -> GatewayCharge:
    # Another card is another fingerprint; the same card vaulted again (another reference to
    # it) is the same charge, as a processor recognises a card by its fingerprint.
    if row.amount != amount or row.currency != currency or row.fingerprint != card.fingerprint:
        raise GatewayRequestError(
            f"idempotency key {row.idempotency_key!r} was used for a different charge"
        )
    if row.outcome == SimulatedChargeOutcome.DECLINED:
        raise CardDeclined(row.decline_code, row.decline_message)
    if row.behaviour == SimulatedCardBehaviour.LOSE_RESPONSE:
        raise GatewayTransientError(
            f"simulated timeout after the processor took charge {row.reference} "
            "(the answer is lost)"
        )
    return GatewayCharge(reference=row.reference, amount=row.amount, currency=row.currency)


def _replay_refund(
    row: SimulatedRefund, *, charge_reference: str, amount: Decimal
) -> GatewayRefund:
    if row.charge.reference != charge_reference or row.amount != amount:
        raise GatewayRequestError(
            f"idempotency key {row.idempotency_key!r} was used for a different refund"
        )
    return GatewayRefund(
        reference=row.reference,
        charge_reference=row.charge.reference,
        amount=row.amount,
        currency=row.currency,
    )
