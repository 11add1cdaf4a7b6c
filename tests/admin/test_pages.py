"""Every other admin page renders for staff, stays read-only where money and history are,
and costs the same number of queries whatever the number of rows."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from inventory.models import Reservation
from payments.models import Payment, Refund
from sagas.models import FaultRule, Saga
from sagas.tests.harness import drive
from tests.admin.support import confirmed_order, queries_for, staff_client
from tests.factories import make_user

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "admin:inventory_product_changelist",
    "admin:inventory_reservation_changelist",
    "admin:payments_payment_changelist",
    "admin:payments_refund_changelist",
    "admin:payments_simulatedcharge_changelist",
    "admin:payments_simulatedrefund_changelist",
    "admin:payments_simulatedtransientfailure_changelist",
    "admin:sagas_faultrule_changelist",
    "admin:eventstore_projectioncheckpoint_changelist",
]


def superuser_client() -> Client:
    client = Client()
    client.force_login(make_user(superuser=True))
    return client


def refunded_order() -> None:
    """Place, confirm, then cancel an order, so it has a payment with its refund."""
    from orders.services import order_request_cancellation

    order_id = confirmed_order()
    saga_id = order_request_cancellation(
        order_id=order_id,
        actor="user:test",
        acting_as_staff=True,
    )
    assert drive(saga_id).status == "COMPLETED"


def detail_urls() -> list[str]:
    payment = Payment.objects.filter(refunds__isnull=False).first()
    reservation = Reservation.objects.first()
    assert payment is not None and reservation is not None
    refund = Refund.objects.get(payment=payment)
    return [
        reverse("admin:payments_payment_change", args=[payment.pk]),
        reverse("admin:payments_refund_change", args=[refund.pk]),
        reverse("admin:inventory_reservation_change", args=[reservation.pk]),
        reverse("admin:inventory_product_change", args=[reservation.lines.get().product_id]),
    ]


@pytest.mark.internals
def test_every_list_and_page_renders_and_costs_the_same_for_3_and_30_rows() -> None:
    client = superuser_client()
    for _ in range(3):
        refunded_order()
    for url in CHANGELISTS:
        queries_for(client, reverse(url))
    few = {url: queries_for(client, reverse(url)) for url in CHANGELISTS}
    for url in detail_urls():
        queries_for(client, url)
    details_few = [queries_for(client, url) for url in detail_urls()]
    for _ in range(27):
        refunded_order()
    many = {url: queries_for(client, reverse(url)) for url in CHANGELISTS}
    details_many = [queries_for(client, url) for url in detail_urls()]

    print("\nqueries with 3 rows -> with 30 rows:")
    for url in CHANGELISTS:
        print(f"  {url}: {few[url]} -> {many[url]}")
    print(f"  detail pages: {details_few} -> {details_many}")
    assert Payment.objects.count() == 30 and Refund.objects.count() == 30
    assert few == many
    assert details_few == details_many


def test_payments_and_refunds_cannot_be_added_changed_or_deleted() -> None:
    client = superuser_client()
    refunded_order()
    payment = Payment.objects.get()
    refund = Refund.objects.get()

    for model, obj in (("payment", payment), ("refund", refund)):
        assert client.get(reverse(f"admin:payments_{model}_add")).status_code == 403
        change = reverse(f"admin:payments_{model}_change", args=[obj.pk])
        assert client.post(change, {"amount": "0.01"}).status_code == 403
        delete = reverse(f"admin:payments_{model}_delete", args=[obj.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
    page = client.get(reverse("admin:payments_payment_change", args=[payment.pk])).content
    assert refund.gateway_reference.encode() in page  # the refund, inline
    assert Payment.objects.get().amount == payment.amount


def test_the_fault_plan_is_listed_only_while_fault_injection_is_enabled() -> None:
    client = superuser_client()
    url = reverse("admin:sagas_faultrule_changelist")

    assert client.get(url).status_code == 200
    assert url in client.get(reverse("admin:index")).content.decode()
    with override_settings(FAULT_INJECTION_ENABLED=False):
        assert url not in client.get(reverse("admin:index")).content.decode()
        assert client.get(url).status_code == 403
        assert client.get(reverse("admin:sagas_faultrule_add")).status_code == 403
    assert not FaultRule.objects.exists()


def test_staff_see_the_index_and_every_changelist_they_may_view() -> None:
    client, _ = staff_client()
    confirmed_order()

    assert client.get(reverse("admin:index")).status_code == 200
    for url in (
        "admin:orders_ordersummary_changelist",
        "admin:sagas_saga_changelist",
        "admin:sagas_saga_failed_compensations",
        "admin:sagas_saga_needs_attention",
        "admin:eventstore_storedevent_changelist",
        "admin:eventstore_projectioncheckpoint_changelist",
        "admin:payments_payment_changelist",
        "admin:inventory_product_changelist",
    ):
        assert client.get(reverse(url)).status_code == 200, url
    assert Saga.objects.count() == 1


def test_a_forged_action_the_user_may_not_run_is_refused() -> None:
    from sagas.faults import fault_rule_set
    from sagas.statuses import FaultMode, Phase

    fault_rule_set(
        saga_type="place_order",
        step="charge_payment",
        phase=Phase.ACTION,
        mode=FaultMode.TRANSIENT,
        times=1,
    )
    rule = FaultRule.objects.get()
    url = reverse("admin:sagas_faultrule_changelist")
    viewer, _ = staff_client("sagas.view_faultrule")
    editor, _ = staff_client("sagas.view_faultrule", "sagas.delete_faultrule")
    forged = {"action": "delete_selected", "_selected_action": [str(rule.pk)], "post": "yes"}

    assert viewer.post(url, forged).status_code == 403
    assert FaultRule.objects.filter(pk=rule.pk).exists()
    assert editor.post(url, forged).status_code == 302
    assert not FaultRule.objects.exists()
