"""Mark a saga's failed compensation resolved by hand and let the saga carry on."""

from __future__ import annotations

from sagas.management.operator_command import OperatorActionCommand
from sagas.operations import SKIP


class Command(OperatorActionCommand):
    action = SKIP
