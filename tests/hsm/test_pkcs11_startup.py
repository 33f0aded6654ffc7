"""`xtm-composer run` with its key in a SoftHSM2 token: a wrong PIN stops it at start-up, cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .softhsm import SHARED_KEY_LABEL, SoftHsm

WRONG_PIN = "wrong-pin-5e61"


def run_composer(softhsm: SoftHsm, tmp_path: Path, pin: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SOFTHSM2_CONF": str(softhsm.conf),
        "XTM_PIN": pin,
        "MANAGER__ID": "hsm-startup-test",
        "MANAGER__CREDENTIALS_KEY_PKCS11__MODULE": str(softhsm.module),
        "MANAGER__CREDENTIALS_KEY_PKCS11__TOKEN_LABEL": softhsm.token_label,
        "MANAGER__CREDENTIALS_KEY_PKCS11__KEY_LABEL": SHARED_KEY_LABEL,
        "MANAGER__CREDENTIALS_KEY_PKCS11__PIN_ENV": "XTM_PIN",
        "MANAGER__CREDENTIALS_KEY_PKCS11__OAEP": "raw",
        "OPENCTI__ENABLE": "true",
        "OPENCTI__URL": "http://127.0.0.1:9",  # never reached: the key fails first
        "OPENCTI__TOKEN": "unused-token",
        "OPENCTI__DAEMON__SELECTOR": "docker",
    }
    return subprocess.run(
        [sys.executable, "-m", "xtm_composer", "run", "--config-dir", str(tmp_path / "no-config")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_wrong_pin_stops_run_with_one_line_naming_the_token_and_never_the_pin(softhsm, tmp_path):
    result = run_composer(softhsm, tmp_path, WRONG_PIN)
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, output
    assert repr(softhsm.token_label) in lines[0] and "PIN is incorrect" in lines[0] and "$XTM_PIN" in lines[0]
    assert WRONG_PIN not in output and softhsm.user_pin not in output
