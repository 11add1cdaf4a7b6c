"""Gateways standing in for an outside processor that misbehaves (plugged in through settings)."""

from __future__ import annotations

from decimal import Decimal

from payments.gateway import GatewayRefund, GatewayTransientError
from payments.simulated import SimulatedGateway


class RefundTimeoutGateway(SimulatedGateway):
    """Charge like the simulation; time out on every refund."""

    def refund(
        self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> GatewayRefund:
        raise GatewayTransientError("simulated refund timeout")
