"""Monitoring, alerts and audit on a real run: one alert per problem (log + webhook), Prometheus
metrics, readiness following the platform, an audit line per action, and no secret anywhere."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .conftest import EXECUTE_SCHEDULE, wait_until

pytestmark = pytest.mark.engine

SECRETS = ("hunter2=secret\nline ✓", "tok-9f8e7d6c5b4a")


class WebhookReceiver:
    def __init__(self) -> None:
        self.alerts: list[dict] = []

        async def hook(request: Request) -> Response:
            self.alerts.append(json.loads(await request.body()))
            return Response(status_code=204)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        self.server = uvicorn.Server(
            uvicorn.Config(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), log_level="error")
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def of_kind(self, kind: str) -> list[dict]:
        return [a for a in self.alerts if a["alert"] == kind]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def monitored(tmp_path, receiver, port):
    return {
        "MANAGER__MONITORING__ENABLE": "true",
        "MANAGER__MONITORING__PORT": str(port),
        "MANAGER__ALERTS__WEBHOOK_URL": receiver.url,
        "MANAGER__AUDIT__PATH": str(tmp_path / "audit" / "audit.jsonl"),
        "MANAGER__HEALTH_INTERVAL": "2",
        "MANAGER__DATA_DIRECTORY": str(tmp_path / "data"),
    }


def get(port: int, path: str) -> httpx.Response:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.ConnectError:  # not listening yet
        return httpx.Response(599)


def counter(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_reboot_loop_alert_metrics_readiness_audit_and_no_secret_leaks(
    demo_image, manager_id, emulator, start_composer, receiver, tmp_path
):
    port = free_port()
    composer = start_composer(emulator.server.url, **monitored(tmp_path, receiver, port))
    wait_until(lambda: get(port, "/readyz").status_code == 200, timeout=20, what="ready")
    assert get(port, "/healthz").status_code == 200

    good = emulator.admin.add_connector(
        "Good One", demo_image, secrets={"API_KEY": SECRETS[0]}, config={"PLAIN": "x"}, start=True
    )
    emulator.admin.add_connector(
        "Crasher", demo_image, config={"DEMO_CRASH": "1"}, secrets={"OTHER": SECRETS[1]}, start=True
    )
    wait_until(lambda: receiver.of_kind("reboot_loop"), timeout=120, what="a reboot-loop alert")
    time.sleep(3 * EXECUTE_SCHEDULE)  # more passes, still in the loop: no second alert
    (alert,) = receiver.of_kind("reboot_loop")
    assert alert["connector_name"] == "Crasher" and alert["manager_id"] == manager_id
    metrics = get(port, "/metrics").text
    assert 'xtm_composer_reboot_loops{platform="opencti"} 1.0' in metrics
    assert 'xtm_composer_actions_total{kind="deploy",outcome="ok",platform="opencti"}' in metrics
    assert "xtm_composer_last_successful_pass_timestamp_seconds" in metrics

    emulator.admin.edit(good["id"], config={"PLAIN": "y"})  # a recreate in the audit trail
    time.sleep(2 * EXECUTE_SCHEDULE)
    emulator.server.stop()
    wait_until(
        lambda: get(port, "/readyz").status_code == 503, timeout=20, what="readyz red while the platform is down"
    )
    emulator.server.start()
    wait_until(lambda: get(port, "/readyz").status_code == 200, timeout=30, what="ready again")

    assert composer.stop() == 0
    audit_lines = [json.loads(line) for line in (tmp_path / "audit" / "audit.jsonl").read_text().splitlines()]
    actions = {(a["action"], a["connector_name"]) for a in audit_lines}
    assert {("deploy", "Good One"), ("recreate", "Good One"), ("report-status", "Good One")} <= actions
    assert all(
        {"time", "manager", "platform", "connector_id", "action", "outcome", "hash"} <= set(a) for a in audit_lines
    )

    everything = "\n".join(
        [
            composer.log_text(),
            (tmp_path / "audit" / "audit.jsonl").read_text(),
            metrics,
            json.dumps(receiver.alerts),
            *(p.read_text() for p in (tmp_path / "data").glob("*.json")),
        ]
    )
    for secret in SECRETS:
        for fragment in secret.split("\n"):
            assert fragment not in everything


def test_a_wrong_token_raises_exactly_one_alert_and_counts_in_metrics(emulator, start_composer, receiver, tmp_path):
    port = free_port()
    composer = start_composer(emulator.server.url, OPENCTI__TOKEN="wrong-token", **monitored(tmp_path, receiver, port))
    wait_until(lambda: receiver.of_kind("auth_failure"), timeout=20, what="an auth-failure alert")
    name = 'xtm_composer_platform_auth_failures_total{platform="opencti"}'
    wait_until(lambda: counter(get(port, "/metrics").text, name) >= 2, timeout=30, what="several failures counted")
    (alert,) = receiver.of_kind("auth_failure")
    assert "token" in alert["message"] and "wrong-token" not in json.dumps(receiver.alerts)
    assert get(port, "/readyz").status_code == 503
    assert composer.stop() == 0
    assert sum(1 for line in composer.log_text().splitlines() if '"event": "alert"' in line) == 1
