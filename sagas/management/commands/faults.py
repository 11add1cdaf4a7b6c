"""Show and edit the fault-injection plan: ``faults list|set|clear``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.errors import UnknownSagaType
from sagas.faults import fault_rule_set, fault_rules_clear, fault_rules_list
from sagas.statuses import FaultMode, Phase


class Command(BaseCommand):
    help = (
        "Fault injection. list: show the plan. set SAGA STEP --phase action|compensation "
        "--mode transient|permanent [--times N]: make that step fail N times (default: until "
        "cleared). clear [SAGA [STEP]]: remove rules. Honoured only when "
        "FAULT_INJECTION_ENABLED is true."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        sub.add_parser("list", help="show the plan")
        setter = sub.add_parser("set", help="add or replace a rule")
        setter.add_argument("saga_type")
        setter.add_argument("step")
        setter.add_argument("--phase", choices=[p.value for p in Phase], default="action")
        setter.add_argument("--mode", choices=[m.value for m in FaultMode], default="transient")
        setter.add_argument("--times", type=int, default=None, help="default: until cleared")
        clearer = sub.add_parser("clear", help="remove rules: all, a saga type's, or a step's")
        clearer.add_argument("saga_type", nargs="?")
        clearer.add_argument("step", nargs="?")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.FAULT_INJECTION_ENABLED:
            self.stderr.write(
                "note: FAULT_INJECTION_ENABLED is off here; workers ignore the plan until it is on"
            )
        verb = options["verb"]
        if verb == "list":
            self._list()
        elif verb == "set":
            self._set(options)
        else:
            deleted = fault_rules_clear(saga_type=options["saga_type"], step=options["step"])
            self.stdout.write(f"cleared {deleted} rule(s)")

    def _list(self) -> None:
        rules = fault_rules_list()
        if not rules:
            self.stdout.write("no faults planned")
            return
        for rule in rules:
            times = "until cleared" if rule.remaining is None else f"{rule.remaining} left"
            self.stdout.write(
                f"{rule.saga_type} {rule.step} {rule.phase.value}: {rule.mode.value}, "
                f"{times}, {rule.hits} hit(s)"
            )

    def _set(self, options: dict[str, Any]) -> None:
        try:
            rule = fault_rule_set(
                saga_type=options["saga_type"],
                step=options["step"],
                phase=Phase(options["phase"]),
                mode=FaultMode(options["mode"]),
                times=options["times"],
            )
        except (UnknownSagaType, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        times = "until cleared" if rule.remaining is None else f"{rule.remaining} time(s)"
        self.stdout.write(
            f"{rule.saga_type} {rule.step} {rule.phase.value} will fail ({rule.mode.value}) {times}"
        )
