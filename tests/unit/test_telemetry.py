"""Alerts fire once per problem and are retried to the webhook without blocking; audit lines are
append-only JSON, rotated; the watchdog sees stalled loops."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from xtm_composer.config.settings import AlertSettings, AuditSettings
from xtm_composer.daemon import watch_loops
from xtm_composer.telemetry import Alerter, AuditLog, LoopHealth, Telemetry


async def test_one_alert_per_problem_until_it_clears():
    alerter = Alerter(AlertSettings(), "m")
    assert alerter.raise_alert("reboot_loop", "c1", "looping") is True
    assert alerter.raise_alert("reboot_loop", "c1", "still looping") is False
    assert alerter.raise_alert("reboot_loop", "c2", "another") is True
    alerter.clear("reboot_loop", "c1")
    assert alerter.raise_alert("reboot_loop", "c1", "again") is True
    assert [a["message"] for a in alerter.sent] == ["looping", "another", "again"]


async def test_webhook_is_retried_in_the_background(monkeypatch):
    attempts: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(json.loads(request.content))
        return httpx.Response(503 if len(attempts) < 3 else 204)

    real_client = httpx.AsyncClient
    monkeypatch.setattr(
        "xtm_composer.telemetry.httpx.AsyncClient",
        lambda **kw: real_client(transport=httpx.MockTransport(handler), **kw),
    )
    settings = AlertSettings(webhook_url="http://hook.test/x", webhook_attempts=3, webhook_retry_delay=0)
    alerter = Alerter(settings, "m")
    alerter.raise_alert("auth_failure", "opencti", "token refused", platform="opencti")
    assert attempts == []  # raising returned before any POST: the loop is never blocked
    await alerter.drain()
    assert len(attempts) == 3 and attempts[-1]["alert"] == "auth_failure" and attempts[-1]["manager_id"] == "m"


def test_audit_lines_are_json_and_rotate(tmp_path):
    audit = AuditLog(AuditSettings(path=tmp_path / "audit.jsonl", max_bytes=2048, backups=2))
    for i in range(60):
        audit.write(manager="m", platform="opencti", connector_id=f"c{i}", action="deploy", outcome="ok", hash="h")
    audit.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    last = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert last[-1]["connector_id"] == "c59" and last[-1]["time"].endswith("Z")


def test_no_audit_file_without_a_path(tmp_path):
    AuditLog(AuditSettings()).write(action="deploy")
    assert list(tmp_path.iterdir()) == []


async def test_watchdog_raises_one_stalled_alert_and_clears_it(monkeypatch):
    now = [100.0]
    telemetry = Telemetry(manager_id="m", alerts=AlertSettings(stalled_after=1))
    telemetry.health = LoopHealth(clock=lambda: now[0])
    telemetry.health.beat("opencti-reconcile", period=0.1)
    monkeypatch.setattr("xtm_composer.daemon.WATCHDOG_INTERVAL_SECONDS", 0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(watch_loops(telemetry, stop))
    now[0] += 5
    await asyncio.sleep(0.1)
    assert [a["alert"] for a in telemetry.alerter.sent] == ["stalled_loop"]
    telemetry.health.beat("opencti-reconcile", period=0.1)
    await asyncio.sleep(0.1)
    assert ("stalled_loop", "opencti-reconcile") not in telemetry.alerter.active
    stop.set()
    await task


@pytest.mark.parametrize(
    ("registered", "engine", "ready"),
    [
        ({}, {}, False),
        ({"opencti": True}, {"opencti": True}, True),
        ({"opencti": False}, {"opencti": True}, False),
        ({"opencti": True}, {"opencti": False}, False),
    ],
)
def test_readiness_needs_registration_and_a_reachable_engine(registered, engine, ready):
    health = LoopHealth(registered=registered, engine_ok=engine)
    assert health.ready() is ready
