"""Management commands: recover_sagas (see test_sweeper), retry_saga, skip_compensation, faults."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import CommandError, call_command

from sagas.faults import fault_rule_set
from sagas.models import FaultRule, Saga, SagaOperatorAction
from sagas.statuses import FaultMode, Phase, SagaStatus
from sagas.tests.harness import drive, start

pytestmark = pytest.mark.django_db


def stuck_saga() -> uuid.UUID:
    fault_rule_set(
        saga_type="test.effects",
        step="b",
        phase=Phase.COMPENSATION,
        mode=FaultMode.PERMANENT,
        times=1,
    )
    saga_id = start("test.effects", {"fail_at": "d"})
    assert drive(saga_id).status == SagaStatus.COMPENSATION_FAILED
    return saga_id


def test_retry_saga_resumes_a_failed_compensation(capsys: pytest.CaptureFixture[str]) -> None:
    saga_id = stuck_saga()

    call_command("retry_saga", str(saga_id), "--reason", "fixed")

    assert "retried" in capsys.readouterr().out
    assert Saga.objects.get(pk=saga_id).status == SagaStatus.COMPENSATING
    action = SagaOperatorAction.objects.get(saga_id=saga_id)
    assert action.actor.startswith("cli")
    assert action.reason == "fixed"
    with pytest.raises(CommandError, match="COMPENSATING"):
        call_command("retry_saga", str(saga_id))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("retry_saga", str(uuid.uuid4()))


def test_skip_compensation_needs_a_reason_and_marks_the_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    saga_id = stuck_saga()
    with pytest.raises(CommandError, match="reason"):
        call_command("skip_compensation", str(saga_id), "--reason", " ")

    call_command("skip_compensation", str(saga_id), "--reason", "refunded by hand")

    assert "skipped" in capsys.readouterr().out
    assert drive(saga_id).status == SagaStatus.COMPENSATED
    assert SagaOperatorAction.objects.get(saga_id=saga_id).reason == "refunded by hand"


def test_faults_set_list_and_clear(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("faults", "list")
    assert "no faults planned" in capsys.readouterr().out

    call_command(
        "faults", "set", "test.effects", "b", "--phase", "compensation", "--mode", "permanent"
    )
    call_command("faults", "set", "test.effects", "a", "--mode", "transient", "--times", "2")
    call_command("faults", "set", "test.local", "b")
    out = capsys.readouterr().out
    assert "test.effects b compensation will fail (permanent) until cleared" in out
    assert "test.effects a action will fail (transient) 2 time(s)" in out

    call_command("faults", "list")
    listed = capsys.readouterr().out
    assert "test.effects a action: transient, 2 left, 0 hit(s)" in listed
    assert "test.effects b compensation: permanent, until cleared, 0 hit(s)" in listed

    call_command("faults", "clear", "test.effects", "a")
    assert "cleared 1 rule(s)" in capsys.readouterr().out
    call_command("faults", "clear", "test.effects")
    assert "cleared 1 rule(s)" in capsys.readouterr().out
    call_command("faults", "clear")
    assert "cleared 1 rule(s)" in capsys.readouterr().out
    assert not FaultRule.objects.exists()


def test_faults_set_refuses_unknown_sagas_and_steps() -> None:
    with pytest.raises(CommandError, match="no saga definition"):
        call_command("faults", "set", "nope", "a")
    with pytest.raises(CommandError, match="no step"):
        call_command("faults", "set", "test.effects", "zz")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("faults", "set", "test.effects", "a", "--times", "0")
