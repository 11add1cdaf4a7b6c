"""Store payments on our side, and the simulated processor's own records on its side.

``Payment`` and ``Refund`` are what this back office knows: one row per charge attempt that got
a final answer (charged or declined), keyed by the saga step's idempotency key. The
``Simulated*`` tables play the card processor's database for ``payments.simulated``; nothing
of ours reads them to make a decision.

No payment token is stored: a payment keeps what a refund needs (the charge's reference at
the processor), and the simulated processor's charges keep a keyed fingerprint of the card's
token and how it behaves, never the token itself. The simulated processor has no table of
cards: its reference to a card carries that fingerprint and behaviour, signed
(``payments.simulated``).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class PaymentStatus(models.TextChoices):
    CHARGED = "CHARGED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


#: Statuses of a payment that took money (refunded or not): at most one per order.
SETTLED_STATUSES = (PaymentStatus.CHARGED, PaymentStatus.REFUNDED)


class Payment(models.Model):
    """Record the final answer to one charge request for an order."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order_id = models.UUIDField(db_index=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=PaymentStatus.choices)
    gateway_reference = models.CharField(max_length=100, blank=True, default="")
    decline_code = models.CharField(max_length=64, blank=True, default="")
    decline_message = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payments_payment_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(status__in=sorted(PaymentStatus.values)),
                name="payments_payment_status_valid",
            ),
            # The money taken from an order's customer is one charge at most.
            models.UniqueConstraint(
                fields=["order_id"],
                condition=Q(status__in=sorted(SETTLED_STATUSES)),
                name="payments_payment_one_settled_per_order",
            ),
            models.CheckConstraint(
                condition=Q(status=PaymentStatus.DECLINED) | ~Q(gateway_reference=""),
                name="payments_payment_settled_has_reference",
            ),
            models.CheckConstraint(
                condition=~Q(status=PaymentStatus.DECLINED) | ~Q(decline_code=""),
                name="payments_payment_declined_has_code",
            ),
            models.CheckConstraint(
                condition=~Q(status=PaymentStatus.REFUNDED) | Q(refunded_at__isnull=False),
                name="payments_payment_refunded_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} for order {self.order_id} ({self.status})"


class Refund(models.Model):
    """Record the refund of a payment, in full (one per payment)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    idempotency_key = models.CharField(max_length=200, unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    gateway_reference = models.CharField(max_length=100)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payments_refund_amount_positive"
            ),
            # Refunds are in full: a second one for the same payment would pay back twice.
            models.UniqueConstraint(fields=["payment"], name="payments_refund_one_per_payment"),
        ]

    def __str__(self) -> str:
        return f"refund of {self.amount} {self.currency} ({self.gateway_reference})"


# --- the simulated processor's side (payments.simulated) -------------------------------------


class SimulatedChargeOutcome(models.TextChoices):
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"


class SimulatedCardBehaviour(models.TextChoices):
    """How the simulated processor answers charges of a card (from its test token's name)."""

    APPROVE = "APPROVE"
    DECLINE = "DECLINE"
    #: Fails transiently a few times per idempotency key, then approves.
    FLAKY = "FLAKY"
    #: Approves, then loses every answer under the charge's key.
    LOSE_RESPONSE = "LOSE_RESPONSE"


class SimulatedCharge(models.Model):
    """Play the processor's record of a charge: its answer is final for its idempotency key.

    Names the card charged by its token's fingerprint (an HMAC under the secret key, so the
    same card is recognisable without the token being readable) and keeps the behaviour its
    test token stands for (a replay of a lost answer is lost again), never the token.
    """

    reference = models.CharField(max_length=100, unique=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    fingerprint = models.CharField(max_length=64)
    behaviour = models.CharField(max_length=16, choices=SimulatedCardBehaviour.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    outcome = models.CharField(max_length=16, choices=SimulatedChargeOutcome.choices)
    decline_code = models.CharField(max_length=64, blank=True, default="")
    decline_message = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "simulated gateway charge"
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=sorted(SimulatedChargeOutcome.values)),
                name="payments_simulatedcharge_outcome_valid",
            ),
            models.CheckConstraint(
                condition=Q(behaviour__in=sorted(SimulatedCardBehaviour.values)),
                name="payments_simulatedcharge_behaviour_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.outcome})"


class SimulatedRefund(models.Model):
    """Play the processor's record of a refund against one of its charges."""

    reference = models.CharField(max_length=100, unique=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    charge = models.ForeignKey(SimulatedCharge, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "simulated gateway refund"
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payments_simulatedrefund_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} of {self.charge_id}"


class SimulatedTransientFailure(models.Model):
    """Count the transient failures the simulated processor gave one idempotency key."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    failures = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "simulated gateway transient failure"

    def __str__(self) -> str:
        return f"{self.idempotency_key}: {self.failures} failure(s)"
