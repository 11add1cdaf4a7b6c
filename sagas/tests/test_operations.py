"""Retry and skip are described once: every edge reads the same description."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth.models import Permission

from sagas.admin import SagaAdmin
from sagas.management.commands.retry_saga import Command as RetryCommand
from sagas.management.commands.skip_compensation import Command as SkipCommand
from sagas.management.commands.skip_step import Command as SkipStepCommand
from sagas.models import FailedCompensation, NeedsAttention, Saga
from sagas.operations import OPERATOR_ACTIONS, RETRY, SKIP, SKIP_STEP
from sagas.statuses import OperatorActionKind

pytestmark = pytest.mark.django_db


def test_each_action_names_a_permission_that_exists() -> None:
    for action in OPERATOR_ACTIONS.values():
        app_label, codename = action.permission.split(".")
        assert Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).exists(), action.permission


def test_only_the_skips_need_a_reason() -> None:
    assert set(OPERATOR_ACTIONS) == set(OperatorActionKind)
    assert (RETRY.needs_reason, SKIP.needs_reason, SKIP_STEP.needs_reason) == (False, True, True)
    assert SKIP.reason_required and SKIP.denied and RETRY.denied
    assert SKIP_STEP.reason_required and SKIP_STEP.denied


def test_skipping_a_step_needs_the_same_permission_as_skipping_a_compensation() -> None:
    assert SKIP_STEP.permission == SKIP.permission


def test_the_admins_and_the_commands_offer_the_described_actions() -> None:
    actions = {
        Saga: {RETRY.admin_action, SKIP.admin_action, SKIP_STEP.admin_action},
        FailedCompensation: {RETRY.admin_action, SKIP.admin_action},
        NeedsAttention: {RETRY.admin_action, SKIP_STEP.admin_action},
    }
    for model, offered in actions.items():
        assert set(site.get_model_admin(model).actions or ()) == offered, model
    assert isinstance(site.get_model_admin(Saga), SagaAdmin)
    assert (RetryCommand.action, SkipCommand.action, SkipStepCommand.action) == (
        RETRY,
        SKIP,
        SKIP_STEP,
    )
    assert RetryCommand().help == RETRY.command_help
    assert SkipCommand().help == SKIP.command_help
    assert SkipStepCommand().help == SKIP_STEP.command_help
