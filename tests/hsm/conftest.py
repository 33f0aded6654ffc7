"""One SoftHSM2 token for the whole session: the shared test key imported, one keypair generated inside.

The PKCS#11 library reads SOFTHSM2_CONF once per process (at C_Initialize), so in-process tests share
a single token directory, set up before the library is first loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType

from xtm_composer.config.settings import Pkcs11Settings

from .softhsm import FRESH_KEY_ID, FRESH_KEY_LABEL, SHARED_KEY_LABEL, SoftHsm, make_softhsm


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    hsm = make_softhsm(tmp_path_factory.mktemp("softhsm"))
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    session = pkcs11.lib(str(hsm.module)).get_token(token_label=hsm.token_label).open(rw=True, user_pin=hsm.user_pin)
    try:
        session.generate_keypair(
            KeyType.RSA,
            4096,
            store=True,
            label=FRESH_KEY_LABEL,
            id=bytes.fromhex(FRESH_KEY_ID),
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
    finally:
        session.close()  # logs out: the composer code logs in on its own
    yield hsm
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def pin_file(tmp_path: Path, softhsm: SoftHsm) -> Path:
    path = tmp_path / "token.pin"
    path.write_text(softhsm.user_pin + "\n")  # as `echo PIN > file` writes it
    path.chmod(0o600)
    return path


@pytest.fixture
def pkcs11_settings(softhsm: SoftHsm, pin_file: Path) -> Callable[..., Pkcs11Settings]:
    """Settings for the session token (shared key, PIN from a file, oaep: raw), with overrides."""

    def make(**overrides: object) -> Pkcs11Settings:
        fields: dict[str, object] = {
            "module": softhsm.module,
            "token_label": softhsm.token_label,
            "key_label": SHARED_KEY_LABEL,
            "pin_file": pin_file,
            "oaep": "raw",
        }
        fields.update(overrides)
        return Pkcs11Settings.model_validate(fields)

    return make
