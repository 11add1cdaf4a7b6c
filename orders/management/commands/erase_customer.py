"""Erase a customer's personal data, as POST /api/customers/{customer_id}/erase/ does."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.serializers import CUSTOMER_ID_MAX
from orders.services import customer_erase


class Command(BaseCommand):
    help = "Destroy a customer's data key: their orders' personal data becomes unreadable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id")
        parser.add_argument("--reason", required=True, help="Why (recorded with the erasure).")
        parser.add_argument(
            "--actor", default="command:erase_customer", help="Who asks (recorded)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        customer_id: str = options["customer_id"]
        reason: str = options["reason"]
        if not 1 <= len(customer_id) <= CUSTOMER_ID_MAX or not customer_id.isprintable():
            raise CommandError(f"A customer id is 1 to {CUSTOMER_ID_MAX} printable characters.")
        if not reason.strip():
            raise CommandError("An erasure needs a non-empty --reason.")
        done = customer_erase(customer_id=customer_id, reason=reason, actor=options["actor"])
        state = "erased" if done.erased_now else "already erased"
        self.stdout.write(
            f"customer {done.customer_id} {state} at {done.erased_at.isoformat()}: "
            f"{done.orders} order(s)"
        )
