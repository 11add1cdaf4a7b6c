"""Users, tokens and catalogue rows for tests (real rows, real permissions)."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

from django.contrib.auth.models import Permission, User
from knox.models import AuthToken
from rest_framework.test import APIClient

from inventory.models import Product

_seq = count(1)


def make_user(*, staff: bool = False, superuser: bool = False, perms: tuple[str, ...] = ()) -> User:
    """Create a user with the named permissions ("app_label.codename")."""
    n = next(_seq)
    if superuser:
        user = User.objects.create_superuser(f"root{n}", f"root{n}@example.test", "pw")
    else:
        user = User.objects.create_user(f"user{n}", f"user{n}@example.test", "pw", is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return User.objects.get(pk=user.pk)  # fresh, without a stale permission cache


def api_client(user: User | None = None) -> APIClient:
    """Return a client authenticated with the user's token (anonymous without a user)."""
    client = APIClient()
    if user is not None:
        _, token = AuthToken.objects.create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def make_product(
    sku: str | None = None,
    *,
    price: str = "10.00",
    stock: int = 100,
    name: str | None = None,
) -> Product:
    n = next(_seq)
    return Product.objects.create(
        sku=sku or f"T-{n}",
        name=name or f"Test product {n}",
        price=Decimal(price),
        currency="EUR",
        stock_on_hand=stock,
    )
