"""docs/monitoring/: the alert rules and the Grafana dashboard name only series the app exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring"

#: Every series the app exports (README, DESIGN.md "Observability"), by its exposed name.
EXPORTED = {
    "backoffice_sagas",
    "backoffice_failed_compensations",
    "backoffice_sagas_past_deadline",
    "backoffice_sagas_needing_attention",
    "backoffice_orders",
    "backoffice_projection_lag_events",
    "backoffice_seconds_since_seen",
    "backoffice_http_requests_total",
    "backoffice_http_request_duration_seconds_bucket",
    "backoffice_saga_step_attempts_total",
    "backoffice_saga_step_duration_seconds_bucket",
    "backoffice_webhook_backlog",
    "backoffice_webhook_oldest_pending_seconds",
}


def _series(expr: str) -> set[str]:
    return set(re.findall(r"\bbackoffice_[a-z_]+", expr))


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_rule_names_exported_series_only() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} >= {
        "FailedCompensationsWaiting",
        "SagasPastTheirDeadline",
        "SagaStepsPastTheirDeadline",
        "ProjectionLagging",
        "WebhookBacklog",
        "WebhookDeliveryStuck",
        "PlaceOrderErrors",
        "PlaceOrderSlow",
        "NoWorkerSeen",
        "NoBeatSeen",
    }
    for rule in rules:
        named = _series(str(rule["expr"]))
        assert named, rule["alert"]
        assert named <= EXPORTED, (rule["alert"], named - EXPORTED)


def test_the_rules_load_in_promtool_when_it_is_installed() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        # The parse above still holds; CI machines with Prometheus check the syntax too.
        return
    result = subprocess.run(
        [promtool, "check", "rules", str(MONITORING / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_json_and_every_panel_names_exported_series() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert panels
    for panel in panels:
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            named = _series(expr)
            assert named, (panel["title"], expr)
            assert named <= EXPORTED, (panel["title"], named - EXPORTED)
