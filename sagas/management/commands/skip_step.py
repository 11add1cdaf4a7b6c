"""Resolve by hand the step a saga needing attention waits at, and let the saga carry on."""

from __future__ import annotations

from sagas.management.operator_command import OperatorActionCommand
from sagas.operations import SKIP_STEP


class Command(OperatorActionCommand):
    action = SKIP_STEP
