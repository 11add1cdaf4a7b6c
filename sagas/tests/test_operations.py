"""Retry and skip are described once: every edge reads the same description."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth.models import Permission

from sagas.admin import SagaAdmin
from sagas.management.commands.retry_saga import Command as RetryCommand
from sagas.management.commands.skip_compensation import Command as SkipCommand
from sagas.models import FailedCompensation, Saga
from sagas.operations import OPERATOR_ACTIONS, RETRY, SKIP
from sagas.statuses import OperatorActionKind

pytestmark = pytest.mark.django_db


def test_each_action_names_a_permission_that_exists() -> None:
    for action in OPERATOR_ACTIONS.values():
        app_label, codename = action.permission.split(".")
        assert Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).exists(), action.permission


def test_only_skip_needs_a_reason() -> None:
    assert set(OPERATOR_ACTIONS) == set(OperatorActionKind)
    assert (RETRY.needs_reason, SKIP.needs_reason) == (False, True)
    assert SKIP.reason_required and SKIP.denied and RETRY.denied


def test_the_admins_and_the_commands_offer_the_described_actions() -> None:
    for model in (Saga, FailedCompensation):
        assert set(site.get_model_admin(model).actions) == {RETRY.admin_action, SKIP.admin_action}
    assert isinstance(site.get_model_admin(Saga), SagaAdmin)
    assert (RetryCommand.action, SkipCommand.action) == (RETRY, SKIP)
    assert RetryCommand().help == RETRY.command_help
    assert SkipCommand().help == SKIP.command_help
