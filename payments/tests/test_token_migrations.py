"""The upgrade that stops storing tokens: payments 0002 and sagas 0008 on data of before.

Migrates the test database back to before them, writes rows as the previous release did
(tokens in saga contexts, payments and the gateway's charges), migrates forward and checks
the tokens are gone and the gateway's charges still answer as their tokens did.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from payments.gateway import CardDeclined, GatewayCharge, GatewayTransientError
from payments.models import SimulatedCardBehaviour, SimulatedCharge
from payments.simulated import SimulatedGateway
from payments.tokens import token_fingerprint

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("payments", "0001_initial"), ("sagas", "0005_stop_request")]
AFTER = [("payments", "0002_vault_payment_methods"), ("sagas", "0008_scrub_payment_token")]


@pytest.fixture
def old_schema() -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        yield executor
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_upgrade_scrubs_tokens_and_keeps_the_gateways_answers(old_schema) -> None:
    apps = old_schema.loader.project_state(BEFORE).apps
    now = timezone.now()
    saga = apps.get_model("sagas", "Saga").objects.create(
        saga_type="place_order",
        status="COMPLETED",
        context={"order_id": "o-1", "payment_token": "tok_visa", "payment_id": "p-1"},
        current_step="confirm_order",
        current_phase="action",
        created_at=now,
        updated_at=now,
    )
    untouched = apps.get_model("sagas", "Saga").objects.create(
        saga_type="cancel_order",
        status="COMPLETED",
        context={"order_id": "o-2"},
        current_step="refund",
        current_phase="action",
        created_at=now,
        updated_at=now,
    )
    apps.get_model("payments", "Payment").objects.create(
        order_id=uuid.uuid4(),
        idempotency_key="k-paid",
        amount=Decimal("5.00"),
        currency="EUR",
        token="tok_visa",
        status="CHARGED",
        gateway_reference="ch_sim_paid",
        created_at=now,
        updated_at=now,
    )
    charges = apps.get_model("payments", "SimulatedCharge")
    for key, token, outcome, code in [
        ("k-paid", "tok_visa", "APPROVED", ""),
        ("k-lost", "tok_lostResponse", "APPROVED", ""),
        ("k-other", "tok_visa", "APPROVED", ""),
        ("k-declined", "tok_chargeDeclined", "DECLINED", "card_declined"),
    ]:
        charges.objects.create(
            reference=f"ch_sim_{key}",
            idempotency_key=key,
            token=token,
            amount=Decimal("5.00"),
            currency="EUR",
            outcome=outcome,
            decline_code=code,
            decline_message="Your card was declined." if code else "",
            created_at=now,
        )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps

    sagas = apps.get_model("sagas", "Saga").objects
    assert sagas.get(pk=saga.pk).context == {"order_id": "o-1", "payment_id": "p-1"}
    assert sagas.get(pk=untouched.pk).context == {"order_id": "o-2"}
    with connection.cursor() as cursor:
        for table in ("payments_payment", "payments_simulatedcharge"):
            cursor.execute(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_name = %s AND column_name = 'token'",
                [table],
            )
            assert cursor.fetchone() == (0,), table
    # Each charge names its card by the token's fingerprint and keeps its behaviour; charges
    # still answer, to a card vaulted now from the same token.
    rows = {c.idempotency_key: c for c in SimulatedCharge.objects.all()}
    assert {key: (row.fingerprint, row.behaviour) for key, row in rows.items()} == {
        "k-paid": (token_fingerprint("tok_visa"), SimulatedCardBehaviour.APPROVE),
        "k-lost": (token_fingerprint("tok_lostResponse"), SimulatedCardBehaviour.LOSE_RESPONSE),
        "k-other": (token_fingerprint("tok_visa"), SimulatedCardBehaviour.APPROVE),
        "k-declined": (token_fingerprint("tok_chargeDeclined"), SimulatedCardBehaviour.DECLINE),
    }
    gateway = SimulatedGateway()
    with pytest.raises(GatewayTransientError, match="answer is lost"):
        gateway.charge(
            amount=Decimal("5.00"),
            currency="EUR",
            payment_method=gateway.create_payment_method(token="tok_lostResponse"),
            idempotency_key="k-lost",
        )
    with pytest.raises(CardDeclined, match="card_declined"):
        gateway.charge(
            amount=Decimal("5.00"),
            currency="EUR",
            payment_method=gateway.create_payment_method(token="tok_chargeDeclined"),
            idempotency_key="k-declined",
        )
    assert gateway.charge(
        amount=Decimal("5.00"),
        currency="EUR",
        payment_method=gateway.create_payment_method(token="tok_visa"),
        idempotency_key="k-paid",
    ) == GatewayCharge(reference="ch_sim_k-paid", amount=Decimal("5.00"), currency="EUR")
