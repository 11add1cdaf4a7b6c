"""Fixtures the saga app's tests share."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient


@pytest.fixture
def operator() -> APIClient:
    user = get_user_model().objects.create_user(username="operator", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="sagas",
            codename__in=["view_saga", "retry_saga", "skip_compensation"],
        )
    )
    client = APIClient()
    client.force_authenticate(user)
    return client
