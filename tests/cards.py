"""Cards at the simulated gateway, for tests that write its charges by hand.

Apart from ``tests.factories`` because the inventory's tests import that module, and the
saga participants (inventory, payments) import nothing of each other, tests included.
"""

from __future__ import annotations

from payments.simulated import SimulatedGateway, open_card


def card_of_charge(token: str = "tok_visa") -> dict[str, str]:
    """Vault a card at the simulated gateway, as placing an order does; return what a charge
    of it records at the gateway (for a ``SimulatedCharge`` written by hand)."""
    card = open_card(SimulatedGateway().create_payment_method(token=token))
    return {"fingerprint": card.fingerprint, "behaviour": card.behaviour}
