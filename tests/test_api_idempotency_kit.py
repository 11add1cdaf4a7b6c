"""The API kit's idempotency keys, on a view that is not the orders': any POST view can use it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from infrastructure.api.idempotency import CLAIMED, IdempotencyKeys, request_id
from orders.models import IdempotencyRecord
from tests.factories import make_user

pytestmark = pytest.mark.django_db

KEYS = IdempotencyKeys(records=IdempotencyRecord)


class MakeThing(APIView):
    """Make a thing per request; the body says how the work should end."""

    ids: list[UUID | None] = []

    def post(self, request: Request) -> Response:
        def work(thing_id: UUID | None) -> Response:
            self.ids.append(thing_id)
            outcome = request.data.get("outcome")
            if outcome == "refused":
                return Response({"detail": "not now"}, status=409)
            if outcome == "invalid":
                raise ValidationError({"name": ["Bad name."]})
            if outcome == "crash":
                raise RuntimeError("the process died after the work committed")
            return Response({"id": str(thing_id)}, status=201, headers={"Location": "/t/1/"})

        return KEYS.respond(request, work)


@pytest.fixture
def send():
    user = make_user()
    MakeThing.ids = []
    view = MakeThing.as_view()

    def post(body: dict[str, Any], key: str | None = None) -> Response:
        headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
        request = APIRequestFactory().post("/things/", body, format="json", **headers)
        force_authenticate(request, user=user)
        response: Response = view(request)
        return response

    post.user = user  # type: ignore[attr-defined]
    return post


def test_without_a_key_the_work_runs_each_time_and_nothing_is_kept(send) -> None:
    assert send({}).status_code == send({}).status_code == 201
    assert MakeThing.ids == [None, None]
    assert not IdempotencyRecord.objects.exists()


def test_a_key_runs_the_work_once_with_its_own_id_and_replays_the_answer(send) -> None:
    first = send({"name": "a"}, key="k")
    again = send({"name": "a"}, key="k")

    thing_id = request_id(user_id=send.user.pk, key="k")
    assert MakeThing.ids == [thing_id]
    assert first.data == again.data == {"id": str(thing_id)}
    assert (again.status_code, again["Location"], again["Idempotent-Replayed"]) == (
        201,
        "/t/1/",
        "true",
    )
    assert send({"name": "b"}, key="k").status_code == 422


@pytest.mark.parametrize(("outcome", "status"), [("refused", 409), ("invalid", 400)])
def test_work_that_ends_in_a_client_error_frees_the_key(send, outcome: str, status: int) -> None:
    assert send({"outcome": outcome}, key="k").status_code == status

    assert not IdempotencyRecord.objects.exists()
    assert send({"name": "another body"}, key="k").status_code == 201


def test_work_that_died_keeps_its_claim_for_the_same_body_only(send) -> None:
    assert send({"outcome": "crash"}, key="k").status_code == 500

    record = IdempotencyRecord.objects.get()
    assert record.response_status == CLAIMED
    assert send({"name": "another body"}, key="k").status_code == 422
    assert send({"outcome": "crash"}, key="k").status_code == 500
    # The retry ran the work again, with the same id: the work can tell it did it before.
    assert MakeThing.ids == [request_id(user_id=send.user.pk, key="k")] * 2


@pytest.mark.parametrize("body", [{"name": "a"}, {"name": "b"}])
def test_a_key_sent_again_after_it_expired_is_a_new_request(send, settings, body) -> None:
    settings.IDEMPOTENCY_TTL_HOURS = 24
    send({"name": "a"}, key="k")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))

    again = send(body, key="k")

    # Not replayed (and not a 422 for another body): the work ran again, a fresh record.
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert len(MakeThing.ids) == 2
    record = IdempotencyRecord.objects.get()
    assert record.created_at > timezone.now() - timedelta(hours=1)


def test_purge_deletes_only_the_expired_records(send, settings) -> None:
    settings.IDEMPOTENCY_TTL_HOURS = 2
    send({"name": "a"}, key="old")
    send({"name": "a"}, key="new")
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=3)
    )

    assert KEYS.purge_expired(dry_run=True) == 1
    assert IdempotencyRecord.objects.count() == 2
    assert KEYS.purge_expired() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
