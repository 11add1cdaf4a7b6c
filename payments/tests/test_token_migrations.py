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

from payments.gateway import GatewayTransientError
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
    for key, token, outcome in [
        ("k-paid", "tok_visa", "APPROVED"),
        ("k-lost", "tok_lostResponse", "APPROVED"),
        ("k-other", "tok_visa", "APPROVED"),
    ]:
        charges.objects.create(
            reference=f"ch_sim_{key}",
            idempotency_key=key,
            token=token,
            amount=Decimal("5.00"),
            currency="EUR",
            outcome=outcome,
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
    # One vaulted card per token, with its fingerprint and behaviour; charges still answer.
    rows = {c.idempotency_key: c for c in SimulatedCharge.objects.select_related("payment_method")}
    assert rows["k-paid"].payment_method_id == rows["k-other"].payment_method_id
    assert rows["k-paid"].payment_method.fingerprint == token_fingerprint("tok_visa")
    lost = rows["k-lost"].payment_method
    assert lost.behaviour == SimulatedCardBehaviour.LOSE_RESPONSE
    with pytest.raises(GatewayTransientError, match="answer is lost"):
        SimulatedGateway().charge(
            amount=Decimal("5.00"),
            currency="EUR",
            payment_method=lost.reference,
            idempotency_key="k-lost",
        )
