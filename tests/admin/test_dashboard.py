"""The dashboard on the admin index: counts, links to the lists they count, its cost."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db.models.functions import Now
from django.urls import reverse

from sagas.models import Saga
from tests.admin.support import (
    confirmed_order,
    place,
    queries_for,
    staff_client,
    stuck_order,
)
from tests.factories import make_user

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")


def links(html: str, section: str) -> dict[str, tuple[int, str]]:
    """Map each count's label in a dashboard section to (count, href)."""
    block = html.split(f'id="{section}"')[1].split("</ul>", maxsplit=1)[0]
    found = re.findall(r'<a href="([^"]+)"[^>]*><strong>(\d+)</strong> ([^<]+)</a>', block)
    return {label.strip(): (int(n), unescape(href)) for href, n, label in found}


def test_dashboard_counts_and_links_to_the_filtered_lists() -> None:
    client, _ = staff_client()
    stuck = stuck_order()
    confirmed = confirmed_order()
    placing = place()
    pending = placing.order_id

    html = client.get(INDEX).content.decode()

    failed = links(html, "dashboard-failed-compensations")
    assert failed == {
        "failed compensations waiting": (1, reverse("admin:sagas_saga_failed_compensations"))
    }
    queue = client.get(failed["failed compensations waiting"][1]).content.decode()
    assert str(stuck.saga_id) in queue

    sagas = links(html, "dashboard-sagas")
    assert {label: n for label, (n, _) in sagas.items()} == {
        "RUNNING": 1,
        "COMPLETED": 1,
        "COMPENSATING": 0,
        "COMPENSATED": 0,
        "COMPENSATION_FAILED": 1,
    }
    running = client.get(sagas["RUNNING"][1]).content.decode()
    assert set(re.findall(r'href="/admin/sagas/saga/([0-9a-f-]{36})/', running)) == {
        str(placing.saga_id)
    }
    assert f"order:{pending}" in running

    orders = links(html, "dashboard-orders-today")
    assert {label: n for label, (n, _) in orders.items()} == {
        "PENDING": 2,
        "CONFIRMED": 1,
        "CANCELLED": 0,
        "in all": 3,
    }
    listed = client.get(orders["PENDING"][1]).content.decode()
    assert str(pending) in listed and str(stuck.order_id) in listed
    assert str(confirmed) not in listed
    # The admin's own status and date filters show the choice the dashboard's link made.
    chosen = re.findall(r'<li class="selected">\s*<a href="[^"]*">([^<]+)</a>', listed)
    assert {"PENDING", "Today"} <= set(chosen), chosen

    projections = links(html, "dashboard-projections")
    assert set(projections) == {"orders", "webhooks"}  # the webhook relay's lag too
    assert projections["orders"][1] == reverse("admin:eventstore_projectioncheckpoint_changelist")


def test_dashboard_counts_the_sagas_needing_attention_and_links_to_their_queue() -> None:
    client, _ = staff_client()
    stuck = stuck_order()
    late = place()
    on_time = place()
    Saga.objects.filter(pk=late.saga_id).update(finish_by=Now() - timedelta(minutes=1))

    html = client.get(INDEX).content.decode()

    attention = links(html, "dashboard-needs-attention")
    url = reverse("admin:sagas_saga_needs_attention")
    assert attention == {"sagas need an operator": (2, url)}
    queue = client.get(url).content.decode()
    assert str(stuck.saga_id) in queue and str(late.saga_id) in queue
    assert str(on_time.saga_id) not in queue
    assert "past its deadline" in queue and "compensation failed" in queue


def test_dashboard_shows_only_what_the_user_may_view() -> None:
    user = make_user(staff=True, perms=("orders.view_ordersummary",))
    client, _ = staff_client()
    client.force_login(user)

    html = client.get(INDEX).content.decode()

    assert 'id="dashboard-orders-today"' in html
    assert 'id="dashboard-sagas"' not in html
    assert 'id="dashboard-failed-compensations"' not in html
    assert 'id="dashboard-projections"' not in html


@pytest.mark.internals
def test_dashboard_queries_do_not_grow_with_rows() -> None:
    client, _ = staff_client()
    for _ in range(3):
        place()
    queries_for(client, INDEX)
    few = queries_for(client, INDEX)
    for _ in range(27):
        place()
    stuck_order()
    many = queries_for(client, INDEX)

    print(f"\nadmin index with dashboard: {few} queries with 3 orders, {many} with 31")
    assert few == many
