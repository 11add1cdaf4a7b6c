"""Place orders through the running API at a steady rate, follow them, print the figures.

The token: ``--token`` (or ``$BACKOFFICE_API_TOKEN``) is used as it is, so the command can
drive a server whose database it cannot reach; ``--user NAME`` instead issues a token for
that user in this database (the server's), valid for the run and revoked at its end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backoffice.api_tokens import api_token_create, api_token_revoke
from backoffice.loadgen import (
    DEFAULT_MIX,
    MIX_TOKENS,
    ApiClient,
    LoadSummary,
    MixError,
    OrderRequest,
    mix_parse,
    mix_sequence,
    orders_follow,
    orders_place,
)
from backoffice.progress import command_progress

TOKEN_ENV = "BACKOFFICE_API_TOKEN"  # noqa: S105 (the variable's name, not a token)


class Command(BaseCommand):
    help = (
        "Place COUNT orders over the HTTP API of a running server (--url) at RATE per second "
        "from CONCURRENCY client threads, with payment tokens in the proportions of --mix, "
        "follow each to its outcome and print the figures. Exits 1 when an order could not be "
        "placed or did not settle in --settle-timeout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="how many orders")
        parser.add_argument(
            "--rate", type=float, default=10.0, help="orders started per second (0: no limit)"
        )
        parser.add_argument("--concurrency", type=int, default=4, help="client threads")
        parser.add_argument(
            "--mix",
            default=DEFAULT_MIX,
            help=f"KIND=WEIGHT,… with kinds {', '.join(MIX_TOKENS)} (default {DEFAULT_MIX})",
        )
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)"
        )
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--token", help=f"an API token (default ${TOKEN_ENV})")
        who.add_argument(
            "--user", help="issue a token for this user for the run (revoked at its end)"
        )
        parser.add_argument(
            "--sku",
            action="append",
            default=None,
            help="a product to order (repeatable; default: the catalogue's products in stock)",
        )
        parser.add_argument("--seed", type=int, default=1, help="fixes the order of the mix")
        parser.add_argument(
            "--settle-timeout",
            type=float,
            default=120.0,
            help="seconds to wait, after the last order, for every order to settle",
        )
        parser.add_argument(
            "--place-timeout",
            type=float,
            default=60.0,
            help="seconds to keep retrying one order through errors before giving it up",
        )
        parser.add_argument(
            "--no-follow", action="store_true", help="place the orders and stop (no outcomes)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        concurrency: int = options["concurrency"]
        rate: float = options["rate"]
        if count < 1:
            raise CommandError("--count must be at least 1.")
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        if rate < 0:
            raise CommandError("--rate must not be negative (0: no limit).")
        try:
            cycle = mix_sequence(mix_parse(options["mix"]), seed=options["seed"])
        except MixError as exc:
            raise CommandError(f"--mix: {exc}") from exc
        with self._token(options) as token:
            summary = self._run(options, token, cycle)
        for line in summary.lines():
            self.stdout.write(line)
        if not summary.ok:
            raise CommandError(
                f"{len(summary.placement.errors)} order(s) not placed, "
                f"{len(summary.unsettled)} not settled."
            )
        self.stdout.write(
            self.style.SUCCESS(
                "every order placed" + ("" if options["no_follow"] else " and settled")
            )
        )

    @contextmanager
    def _token(self, options: dict[str, Any]) -> Iterator[str]:
        if options["user"] is None:
            token = options["token"] or os.environ.get(TOKEN_ENV)
            if not token:
                raise CommandError(f"Give --token, ${TOKEN_ENV} or --user.")
            yield token
            return
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: options["user"]}).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        row, token = api_token_create(user=user, expires_in=timedelta(days=1))
        try:
            yield token
        finally:
            api_token_revoke(row=row)

    def _run(self, options: dict[str, Any], token: str, cycle: list[str]) -> LoadSummary:
        url: str = options["url"]
        count: int = options["count"]

        def client() -> ApiClient:
            return ApiClient(url, token)

        skus: list[str] = options["sku"] or []
        if not skus:
            try:
                skus = client().products_in_stock()
            except Exception as exc:
                raise CommandError(f"cannot read the catalogue at {url}: {exc}") from exc
            if not skus:
                raise CommandError(f"the catalogue at {url} has no product in stock: give --sku.")

        def request_for(index: int) -> OrderRequest:
            kind = cycle[index % len(cycle)]
            return OrderRequest(((skus[index % len(skus)], 1),), MIX_TOKENS[kind])

        with command_progress(self.stdout) as progress:
            placing = progress.add_task("placed", total=count, note="")
            errors: list[str] = []

            def failed(_index: int, error: str) -> None:
                errors.append(error)
                progress.update(placing, advance=1, note=f"{len(errors)} error(s)")

            run = orders_place(
                client_factory=client,
                count=count,
                rate=options["rate"],
                concurrency=options["concurrency"],
                request_for=request_for,
                place_timeout=options["place_timeout"],
                on_placed=lambda _p: progress.advance(placing),
                on_error=failed,
            )
            summary = LoadSummary(requested=count, placement=run, followed=not options["no_follow"])
            if summary.followed:
                settling = progress.add_task("settled", total=summary.placed, note="")
                summary.outcomes, summary.unsettled = orders_follow(
                    client_factory=client,
                    order_ids=[p.order_id for p in run.placed],
                    concurrency=options["concurrency"],
                    timeout=options["settle_timeout"],
                    on_settled=lambda _o: progress.advance(settling),
                )
        return summary
