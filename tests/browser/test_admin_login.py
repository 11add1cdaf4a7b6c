"""Staff log in to the admin in a real browser and reach the back office's index."""

from __future__ import annotations

import pytest

from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_staff_user_logs_in_and_sees_the_admin_index(admin_login, live_server) -> None:
    operator = make_user(staff=True, perms=("orders.view_ordersummary", "sagas.view_saga"))

    page = admin_login(operator)

    assert page.url == f"{live_server.url}/admin/"
    assert page.text_content("#user-tools strong") == operator.username
    assert page.locator("a[href='/admin/sagas/saga/']").count() >= 1


def test_a_wrong_password_is_refused(page, live_server) -> None:
    operator = make_user(staff=True)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", "not-the-password")
    with page.expect_navigation():
        page.click("input[type=submit]")

    assert "/admin/login/" in page.url
    assert "correct username and password" in page.inner_text(".errornote")
