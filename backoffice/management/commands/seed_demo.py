"""Seed a demo: a catalogue, a superuser ``admin`` and an API client ``demo-client``.

``--orders N`` also builds a past day of N orders through the real services
(``backoffice.demo_history``): confirmed, cancelled for each reason, with their events, sagas
and step logs. Each run adds N more orders.

Idempotent: a second run adds nothing and leaves every product as it is (its stock may have
moved since). An existing ``admin`` account is never touched, whatever its privileges: an
account staff demoted or disabled stays so, and its password stays its own. With DEBUG off
the command refuses to run unless forced (docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from backoffice.demo_history import HistoryResult, history_build
from backoffice.progress import command_progress
from inventory.services import NewProduct, product_create_missing

ADMIN_USERNAME = "admin"
CLIENT_USERNAME = "demo-client"
PASSWORD_ENV = "DEMO_ADMIN_PASSWORD"  # noqa: S105 (the variable's name, not a password)


def _product(n: int, name: str, price: str, stock: int) -> NewProduct:
    return NewProduct(sku=f"SKU-{n}", name=name, price=Decimal(price), stock_on_hand=stock)


CATALOGUE: tuple[NewProduct, ...] = (
    _product(1, "Espresso beans, 1 kg", "24.90", 200),
    _product(2, "Filter coffee, 500 g", "11.50", 350),
    _product(3, "Ceramic mug", "8.00", 500),
    _product(4, "Pour-over dripper", "19.00", 120),
    _product(5, "Paper filters, 100", "4.20", 480),
    _product(6, "Burr grinder", "89.00", 50),
    _product(7, "Milk frothing jug", "15.75", 90),
    _product(8, "Gooseneck kettle", "49.00", 75),
    _product(9, "Digital scale", "29.99", 140),
    _product(10, "Green tea, 250 g", "9.40", 260),
    _product(11, "Travel tumbler", "22.00", 180),
    _product(12, "Descaling tablets", "6.80", 300),
)

#: The history's out-of-stock orders ask for more of it than it holds (it gets no delivery).
SCARCE_SKU = "SKU-6"


@dataclass(frozen=True)
class AdminPasswordPlan:
    """Say which password the admin gets (None: keep the one it has) and where it came from."""

    password: str | None
    source: str


def plan_admin_password(
    *, explicit: str | None, from_env: str | None, admin_exists: bool, debug: bool
) -> AdminPasswordPlan:
    """Decide the admin's password: the option, else the environment, else a generated one.

    Outside DEBUG only an explicit ``--admin-password`` may set one: a demo password (from the
    environment, or generated) must never end up on a production admin.
    """
    if explicit is not None:
        if not explicit:
            raise CommandError("--admin-password must not be empty.")
        return AdminPasswordPlan(explicit, "--admin-password")
    if from_env:
        if not debug:
            raise CommandError(
                f"DEBUG is off: refusing to give '{ADMIN_USERNAME}' the demo password from "
                f"{PASSWORD_ENV}. Pass --admin-password explicitly to set one."
            )
        return AdminPasswordPlan(from_env, PASSWORD_ENV)
    if admin_exists:
        return AdminPasswordPlan(None, "")
    if not debug:
        raise CommandError(
            f"DEBUG is off: refusing to create '{ADMIN_USERNAME}' with a generated demo "
            "password. Pass --admin-password explicitly."
        )
    return AdminPasswordPlan(secrets.token_urlsafe(12), "generated")


def ensure_admin(plan: AdminPasswordPlan) -> str:
    """Create the superuser with the planned password if no such account exists.

    An existing account is left alone: re-granting superuser to an account of that name
    (which staff may have demoted, disabled or handed to someone) or resetting its password
    would turn a demo seed into a way to take it over.
    """
    user_model = get_user_model()
    with transaction.atomic():
        if plan.password is None or user_model.objects.filter(username=ADMIN_USERNAME).exists():
            return "already present; left as it is"
        user_model.objects.create_superuser(
            username=ADMIN_USERNAME, email="admin@example.test", password=plan.password
        )
    if plan.source == "generated":
        return f"created; generated password (shown only now): {plan.password}"
    return f"created; password from {plan.source}"


def ensure_client() -> str:
    """Make sure the non-staff API client exists; say what was done.

    Its token comes from ``create_api_token`` (``make run`` calls it): a token is readable
    only when it is issued, so one made here could never be shown.
    """
    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.get_or_create(
            username=CLIENT_USERNAME, defaults={"email": "demo-client@example.test"}
        )
        if created:
            # It authenticates with its token only.
            user.set_unusable_password()
            user.save(update_fields=["password"])
    if not created:
        return "already present"
    return f"created (not staff); issue its API token with create_api_token {CLIENT_USERNAME}"


def _history_line(result: HistoryResult) -> str:
    outcomes = ", ".join(f"{status} {n}" for status, n in sorted(result.outcomes.items()))
    span = (
        f" placed from {result.first:%Y-%m-%d %H:%M} to {result.last:%Y-%m-%d %H:%M} UTC"
        if result.first and result.last
        else ""
    )
    rate = result.orders / result.seconds if result.seconds else 0.0
    return (
        f"History: {result.orders} orders{span}; sagas {outcomes}; "
        f"{result.attempts} step attempts; {result.seconds:.1f}s ({rate:.0f} orders/s)."
    )


class Command(BaseCommand):
    help = (
        "Seed the demo catalogue, the superuser 'admin' and the API client 'demo-client' "
        "(idempotent: existing products and users are left as they are)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="run even with DEBUG off (an existing admin account is still left alone)",
        )
        parser.add_argument(
            "--admin-password",
            default=None,
            help=(
                f"the admin's password (else ${PASSWORD_ENV}, else generated and printed "
                "when the admin is created; only this option works with DEBUG off)"
            ),
        )
        parser.add_argument(
            "--orders",
            type=int,
            default=0,
            help="also build a history of this many orders, spread over the last day",
        )
        parser.add_argument(
            "--jobs", type=int, default=4, help="threads building the history (with --orders)"
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="the history's random seed (with --orders)"
        )

    def _history(self, count: int, *, seed: int, jobs: int) -> None:
        if count < 0:
            raise CommandError("--orders must not be negative.")
        # A line per step of thousands of sagas, and one per planned retry of the flaky
        # cards, would bury the progress bar (errors stay).
        logging.disable(logging.WARNING)
        try:
            result = self._build(count, seed=seed, jobs=jobs)
        finally:
            logging.disable(logging.NOTSET)
        self.stdout.write(_history_line(result))
        if result.cancelled_by_reason:
            self.stdout.write(
                "Cancelled by reason: "
                + ", ".join(f"{r} {n}" for r, n in sorted(result.cancelled_by_reason.items()))
            )

    def _build(self, count: int, *, seed: int, jobs: int) -> HistoryResult:
        with command_progress(self.stdout) as progress:
            task = progress.add_task("orders", total=count, note="")
            return history_build(
                count=count,
                skus=[p.sku for p in CATALOGUE if p.sku != SCARCE_SKU],
                scarce_sku=SCARCE_SKU,
                seed=seed,
                jobs=jobs,
                progress=lambda done: progress.update(task, completed=done),
            )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["orders"] < 0:
            raise CommandError("--orders must not be negative.")
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: seed_demo adds demo products, users and a superuser, which a "
                "production database should not get by accident. Pass --force to seed anyway."
            )
        user_model = get_user_model()
        plan = plan_admin_password(
            explicit=options["admin_password"],
            from_env=os.environ.get(PASSWORD_ENV) or None,
            admin_exists=user_model.objects.filter(username=ADMIN_USERNAME).exists(),
            debug=settings.DEBUG,
        )
        added = product_create_missing(products=CATALOGUE)
        kept = len(CATALOGUE) - len(added)
        self.stdout.write(
            f"Catalogue: {len(added)} product(s) added"
            + (f" ({', '.join(added)})" if added else "")
            + f"; {kept} already present, left as they are."
        )
        # No full stop after these: a generated password ends the line, for copying.
        self.stdout.write(f"Superuser '{ADMIN_USERNAME}': {ensure_admin(plan)}")
        self.stdout.write(f"API client '{CLIENT_USERNAME}': {ensure_client()}")
        if options["orders"]:
            self._history(options["orders"], seed=options["seed"], jobs=options["jobs"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready. The client's token: manage.py create_api_token {CLIENT_USERNAME}"
            )
        )
