"""A private SoftHSM2 token for tests: its own config and token directory, made with softhsm2-util.

SoftHSM2 is a Debian package (`softhsm2`, installed by scripts/setup.sh). Without it these tests
skip, unless XTM_REQUIRE_ENGINE=1 (scripts/test, CI), where a missing SoftHSM2 is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..paths import SHARED_VECTORS

MODULE_CANDIDATES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)
TOKEN_LABEL = "xtm-composer-test"
USER_PIN = "4711-user"
SO_PIN = "0815-so"
SHARED_KEY_LABEL = "composer-key"  # the shared test key (test-key.pkcs8.pem), imported
SHARED_KEY_ID = "c0ffee01"
FRESH_KEY_LABEL = "generated-key"  # a keypair generated inside the token
FRESH_KEY_ID = "c0ffee02"


@dataclass(frozen=True)
class SoftHsm:
    module: Path
    conf: Path  # what SOFTHSM2_CONF must point at
    token_label: str
    user_pin: str
    version: tuple[int, ...]

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}


def softhsm_module() -> Path:
    """The SoftHSM2 PKCS#11 library and its tool, or a skip (a failure under XTM_REQUIRE_ENGINE=1)."""
    module = next((path for path in MODULE_CANDIDATES if path.is_file()), None)
    if module is None or shutil.which("softhsm2-util") is None:
        message = "SoftHSM2 is not installed (apt-get install softhsm2; scripts/setup.sh does it as root)"
        if os.environ.get("XTM_REQUIRE_ENGINE") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return module


def _util(conf: Path, *args: str) -> str:
    result = subprocess.run(
        ["softhsm2-util", *args],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"softhsm2-util {args[0]} failed: {result.stdout}{result.stderr}")
    return result.stdout


def make_softhsm(directory: Path, *, token_label: str = TOKEN_LABEL) -> SoftHsm:
    """A fresh token in `directory`, holding the shared test key (private and public objects)."""
    module = softhsm_module()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    _util(conf, "--init-token", "--free", "--label", token_label, "--pin", USER_PIN, "--so-pin", SO_PIN)
    _util(
        conf,
        "--import",
        str(SHARED_VECTORS / "test-key.pkcs8.pem"),
        "--token",
        token_label,
        "--label",
        SHARED_KEY_LABEL,
        "--id",
        SHARED_KEY_ID,
        "--pin",
        USER_PIN,
    )
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", _util(conf, "--version"))
    version = tuple(int(part) for part in found.groups() if part is not None) if found else (0,)
    return SoftHsm(module=module, conf=conf, token_label=token_label, user_pin=USER_PIN, version=version)
