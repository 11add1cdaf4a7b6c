"""The raw payment token is used for the charge and stored nowhere (DESIGN.md, Personal data).

Orders are placed over HTTP, with an Idempotency-Key, and run by a real worker through each
kind of card the simulated gateway knows (approved, flaky, declined, unknown). Then every
row of every table (each row as text, bytea columns as hex too) and every log line of the
web process and of the worker is searched for the tokens the clients sent.
"""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest
from django.db import connection

from tests.e2e.test_order_flows import Http, settle
from tests.factories import make_product, make_user

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        return [name for (name,) in cursor.fetchall()]


def tables_holding(needle: str) -> list[str]:
    """Name the tables with a row that holds ``needle`` anywhere (text, json, bytea)."""
    found = []
    with connection.cursor() as cursor:
        for name in tables():
            # A row cast to text shows every column: text and json as they are, bytea as hex.
            cursor.execute(
                f"SELECT count(*) FROM {name} AS t "
                "WHERE strpos(t::text, %s) > 0 OR strpos(t::text, %s) > 0",
                [needle, needle.encode().hex()],
            )
            row = cursor.fetchone()
            if row and row[0]:
                found.append(name)
    return found


def test_no_raw_payment_token_is_in_any_table_or_log_line(live_server, live_worker, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    log_start = live_worker.log_size()
    make_product("PII-1", price="4.00", stock=50)
    client = Http(live_server.url, make_user())
    operator = Http(
        live_server.url,
        make_user(staff=True, perms=("orders.view_ordersummary", "sagas.view_saga")),
    )
    # An unknown token (it declines as invalid_token) made unique, so that nothing else in the
    # database can contain it by chance.
    unknown = f"tok_e2e_{uuid4().hex}"
    tokens = {
        "tok_visa": "CONFIRMED",
        "tok_flaky": "CONFIRMED",
        "tok_chargeDeclined": "CANCELLED",
        unknown: "CANCELLED",
    }
    placed = {}
    for n, token in enumerate(tokens):
        response = client.post(
            "/api/orders/",
            {
                "customer_id": "c-pii",
                "items": [{"sku": "PII-1", "quantity": 1}],
                "payment_token": token,
            },
            **{"Idempotency-Key": f"pii-key-{n}"},
        )
        assert response.status_code == 202, response.text
        placed[token] = response.json()["id"]
    settled = {token: settle(client, operator, order_id) for token, order_id in placed.items()}

    # The orders went through: the tokens did their work at the gateway.
    assert {t: order["status"] for t, (order, _) in settled.items()} == tokens
    for _, saga in settled.values():
        assert "payment_token" not in saga["context"]
        assert saga["context"]["payment_method"].startswith("pm_sim_")

    # Nowhere in PostgreSQL: sagas, events, idempotency records, payments, the gateway's books.
    assert {token: tables_holding(token) for token in tokens} == {token: [] for token in tokens}
    # The searches do find what is there (a reference the saga's context holds).
    assert "sagas_saga" in tables_holding(settled["tok_visa"][1]["context"]["payment_method"])

    # Nowhere in the logs: the web process's records (the live server runs in this process)
    # and the worker's log since the test started.
    web_lines = [record.getMessage() for record in caplog.records]
    assert any("placed, saga" in line for line in web_lines), "the web process's log is captured"
    worker_log = live_worker.log_tail(since=log_start, limit=10**9)
    assert str(settled["tok_visa"][1]["id"]) in worker_log, "the worker's log is read"
    for token in tokens:
        assert not [line for line in web_lines if token in line]
        assert token not in worker_log
