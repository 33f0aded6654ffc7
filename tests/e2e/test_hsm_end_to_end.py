"""End to end with the private key only in a SoftHSM2 token: registration, v1 and v2 secrets, a container."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ..hsm.softhsm import SHARED_KEY_LABEL, make_softhsm
from ..paths import SHARED_VECTORS
from .conftest import wait_until
from .test_end_to_end import container_env, get_container

pytestmark = pytest.mark.engine

V1_SECRET = 'v1 s3cr=t "saved by OpenCTI 6.8" ✓'
V2_SECRET = "v2-secret\nsaved by OpenCTI 7 Ω"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """Overrides the e2e key file: nothing is there, so a composer that read a key file would fail."""
    return tmp_path / "no-private-key-here.pem"


def blob_version(view, key: str) -> int:
    entry = next(e for e in view.contract_configuration if e.key == key)
    return base64.b64decode(entry.value)[0]


def test_a_connector_with_v1_and_v2_secrets_runs_while_the_private_key_is_only_in_the_token(
    docker_client, demo_image, manager_id, emulator, start_composer, tmp_path, key_file
):
    hsm = make_softhsm(tmp_path / "softhsm")
    composer = start_composer(
        emulator.server.url,
        SOFTHSM2_CONF=str(hsm.conf),
        XTM_PIN=hsm.user_pin,
        MANAGER__CREDENTIALS_KEY_PKCS11__MODULE=str(hsm.module),
        MANAGER__CREDENTIALS_KEY_PKCS11__TOKEN_LABEL=hsm.token_label,
        MANAGER__CREDENTIALS_KEY_PKCS11__KEY_LABEL=SHARED_KEY_LABEL,
        MANAGER__CREDENTIALS_KEY_PKCS11__PIN_ENV="XTM_PIN",
        MANAGER__CREDENTIALS_KEY_PKCS11__OAEP="raw",
    )
    manager = wait_until(emulator.admin.manager, timeout=20, what="registration")
    assert manager["public_key"] == (SHARED_VECTORS / "test-key.public.pkcs1.pem").read_text()

    cid = emulator.state.add_connector("HSM Secrets", demo_image, secrets={"V1_API_KEY": V1_SECRET}).id
    emulator.state.set_platform(encryption_version=2)  # a platform upgrade: later saves are v2
    emulator.state.edit_connector(cid, secrets={"V2_API_KEY": V2_SECRET})
    view = emulator.state.connector(cid)
    assert (blob_version(view, "V1_API_KEY"), blob_version(view, "V2_API_KEY")) == (1, 2)
    emulator.admin.start(cid)

    container = wait_until(
        lambda: (c := get_container(docker_client, manager_id, cid)) is not None and c.status == "running" and c,
        timeout=20,
        what="a running container",
    )
    env = container_env(container)
    assert env["V1_API_KEY"] == V1_SECRET and env["V2_API_KEY"] == V2_SECRET
    assert composer.stop() == 0
    log = composer.log_text()
    assert f"pkcs11:{hsm.token_label}/{SHARED_KEY_LABEL}" in log and not key_file.exists()
    assert hsm.user_pin not in log and "saved by" not in log
    assert '"level": "error"' not in log
