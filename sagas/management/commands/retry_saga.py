"""Resume a COMPENSATION_FAILED saga at its failed compensation (what the admin's retry does)."""

from __future__ import annotations

from sagas.management.operator_command import OperatorActionCommand
from sagas.operations import RETRY


class Command(OperatorActionCommand):
    action = RETRY
