"""Gateways standing in for an outside processor that misbehaves (plugged in through settings)."""

from __future__ import annotations

from decimal import Decimal

from payments.gateway import GatewayCharge, GatewayRefund, GatewayTransientError
from payments.simulated import SimulatedGateway


class RefundTimeoutGateway(SimulatedGateway):
    """Charge like the simulation; time out on every refund."""

    def refund(
        self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> GatewayRefund:
        raise GatewayTransientError("simulated refund timeout")


class LookupTimeoutGateway(SimulatedGateway):
    """Charge and refund like the simulation; time out when asked what a charge key did."""

    def find_charge(self, *, idempotency_key: str) -> GatewayCharge | None:
        raise GatewayTransientError("simulated lookup timeout")


class VaultTimeoutGateway(SimulatedGateway):
    """Charge and refund like the simulation; time out when handed a card's token."""

    def create_payment_method(self, *, token: str) -> str:
        raise GatewayTransientError("simulated timeout storing the card")
